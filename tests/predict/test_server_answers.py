"""`predict` through an OpenAI-compatible server that answers 200 with something else than a
chat completion (a real loopback server, `FakeServer`), and a server URL no client can open."""

from __future__ import annotations

import json

import pytest

LABEL = "builtin:quickstart/label_tiny"
ANSWER = "<think>x</think>\n<label>[0, 0, 1, 0, 0]</label>"


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        ("{not json", "application/json", "Expecting property name"),
        ("<html><body>502 Bad Gateway</body></html>", "text/html", "no choices in '<html>"),
        ('{"object": "chat.completion", "choices": []}', "application/json", "no choices"),
        ('{"choices": [{"index": 0}]}', "application/json", "a choice without a message"),
        ("null", "application/json", "no choices"),
        ("", "application/json", "Expecting value"),
    ],
)
def test_an_answer_that_is_no_chat_completion_is_exit_2(
    cli, tmp_path, fake_server, body, content_type, why
):
    fake_server.answer(body, content_type)
    out = tmp_path / "labels.csv"
    result = cli("predict", LABEL, "--output", out, "--limit", "2", *fake_server.sets())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"the server at {fake_server.url} answered something that is not an OpenAI chat " in (
        result.output
    )
    assert why in result.output
    assert not out.exists() and not list(tmp_path.glob("labels.csv*"))  # nothing to resume


def test_odd_extras_of_a_completion_cost_no_answer(cli, tmp_path, fake_server):
    """Token counts that are not numbers and log-probabilities that are not numbers are extras:
    the answer is kept, without a confidence (and the report says why)."""
    fake_server.reply(
        ANSWER, logprobs={"content": [{"token": "<label>", "logprob": "abc", "bytes": [300]}]}
    )
    body = json.loads(fake_server.body)
    body["usage"] = {"prompt_tokens": "many", "completion_tokens": None}
    fake_server.answer(json.dumps(body))
    out = tmp_path / "labels.jsonl"
    result = cli("predict", LABEL, "--output", out, "--limit", "2", *fake_server.sets())
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["easy_pred"] for r in rows] == [[0, 0, 1, 0, 0]] * 2
    assert [r["easy_confidence"] for r in rows] == [None, None]
    report = json.loads(out.with_name("labels.jsonl.report.json").read_text())
    assert report["tokens"] == {"prompt": 0, "completion": 0}
    missing = report["aspects"]["easy"]["confidence"]["missing"]
    assert list(missing.values()) == [2] and "no log-probabilities" in next(iter(missing))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1", "not a URL (Invalid IPv6 URL)"),
        ("http://127.0.0.1:99999/v1", "not a URL (Port out of range"),
        ("http://127.0.0.1:port/v1", "not a URL (Port could not be cast"),
        ("localhost:8000/v1", "not an http:// or https:// URL"),
        ("127.0.0.1:8000/v1", "not an http:// or https:// URL"),
        ("http:///v1", "no host in the URL"),
        ("http://exa mple.org/v1", "spaces or control characters"),
        ("http://me:secret@example.org/v1", "a user or password in the URL"),
    ],
)
def test_a_server_url_no_client_can_open_is_refused_when_the_recipe_loads(cli, url, why):
    result = cli("validate", LABEL, "--set", "generation.backend=openai",
                 "--set", f"generation.base_url={url}")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"generation.base_url: {why}" in result.output
    assert "e.g. http://127.0.0.1:8000/v1" in result.output or "api_key_env" in result.output


def test_predict_with_a_broken_url_is_exit_2_before_any_work(cli, tmp_path):
    out = tmp_path / "labels.csv"
    result = cli("predict", LABEL, "--output", out, "--set", "generation.backend=openai",
                 "--set", "generation.base_url=http://[::1")  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "generation.base_url: not a URL (Invalid IPv6 URL)" in result.output
    assert not list(tmp_path.iterdir())


def test_a_good_url_passes(cli):
    for url in ("http://[::1]:8000/v1", "https://api.openai.com/v1", "http://localhost:8000"):
        result = cli("validate", LABEL, "--set", "generation.backend=openai",
                     "--set", f"generation.base_url={url}")  # fmt: skip
        assert result.exit_code == 0, result.output
