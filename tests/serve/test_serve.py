"""`llmscisci serve`: the suite's real server on loopback, the official openai client and raw
HTTP. Each case of issue 21 that a client can send is here; what needs the server's inside is in
test_app.py and test_batcher.py, the property test in test_property.py."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve_helpers import STARTED

JSON = {"content-type": "application/json"}

LABELS = {
    "type": "object",
    "properties": {
        "labels": {
            "type": "array",
            "items": {"type": "integer", "enum": [0, 1]},
            "minItems": 5,
            "maxItems": 5,
        }
    },
    "required": ["labels"],
    "additionalProperties": False,
}
HI = [{"role": "user", "content": "Classify: the code was public."}]


def test_models_and_a_completion_through_the_openai_client(server):
    client = server.client()
    assert [m.id for m in client.models.list().data] == ["builtin:tiny"]
    reply = client.chat.completions.create(model="builtin:tiny", messages=HI, max_tokens=6)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 6 and reply.usage.prompt_tokens > 5


def test_twenty_sampled_json_answers_all_validate(server):
    """The untrained tiny model, temperature 1.0: every answer parses and validates."""
    client = server.client()
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "labels", "schema": LABELS, "strict": True},
    }

    def ask(seed):
        reply = client.chat.completions.create(
            model="builtin:tiny",
            messages=HI,
            max_tokens=40,
            temperature=1.0,
            seed=seed,
            response_format=fmt,
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(20)))
    for text in answers:
        labels = json.loads(text)["labels"]
        assert len(labels) == 5 and set(labels) <= {0, 1}
    assert len(set(answers)) > 1  # sampled, not one fixed answer


def test_streaming_gives_the_same_text_as_the_reply(server):
    client = server.client()
    kwargs = dict(model="builtin:tiny", messages=HI, max_tokens=12, temperature=0.0)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole


def test_seed_n_and_stop(server):
    client = server.client()
    kwargs = dict(model="builtin:tiny", messages=HI, max_tokens=10, temperature=1.0, seed=7)
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    assert client.chat.completions.create(**kwargs).choices[0].message.content == first
    two = client.chat.completions.create(n=2, **kwargs)
    assert [c.index for c in two.choices] == [0, 1]
    word = first.split()[1] if len(first.split()) > 1 else first[:2]
    whole = client.chat.completions.create(**kwargs)
    cut = client.chat.completions.create(stop=[word], **kwargs)
    assert word not in cut.choices[0].message.content and cut.choices[0].finish_reason == "stop"
    # usage counts the answer returned, up to the stop string, not what was decoded past it
    assert cut.usage.completion_tokens < whole.usage.completion_tokens


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{bad json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (
            json.dumps({"messages": HI, "frobnicate": 1}).encode(),
            400,
            "unrecognized request argument: frobnicate",
        ),
        (json.dumps({"messages": []}).encode(), 400, "messages"),
        (
            json.dumps({"messages": HI, "max_tokens": 10**9}).encode(),
            400,
            "maximum context length is 2048",
        ),
        (
            json.dumps({"messages": [{"role": "user", "content": "word " * 3000}]}).encode(),
            400,
            "maximum context length is 2048 tokens; the prompt has",
        ),
        (json.dumps({"messages": HI, "temperature": 7}).encode(), 400, "temperature"),
        (json.dumps({"messages": HI, "model": "gpt-5"}).encode(), 404, "no model 'gpt-5'"),
        (
            json.dumps(
                {
                    "messages": HI,
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"schema": {"type": "string", "pattern": "a+"}},
                    },
                }
            ).encode(),
            400,
            "not supported",
        ),
    ],
)
def test_malformed_requests_get_4xx_and_the_server_stays_up(server, body, status, needle):
    response = httpx.post(f"{server.url}/chat/completions", content=body, headers=JSON, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["type"] in ("invalid_request_error",)
    assert set(error) == {"message", "type", "param", "code"}
    ok = httpx.post(
        f"{server.url}/chat/completions", json={"messages": HI, "max_tokens": 2}, timeout=60
    )
    assert ok.status_code == 200


def _body(**fields) -> bytes:
    return json.dumps({"messages": HI, "max_tokens": 2, **fields}).encode()


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        # issue 21: these were 500s with a plain-text body
        (_body(seed=10**30), "seed", "less than or equal to 18446744073709551615"),
        (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, "not valid JSON"),
        (
            b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 2}',
            None,
            "lone UTF-16 surrogate",
        ),
        # issue 21: lax coercion, and NaN refused for the wrong reason
        (_body(max_tokens=True), "max_tokens", "valid integer (got True)"),
        (_body(temperature=float("nan")), "temperature", "finite number"),
        # the rest of each class
        (_body(temperature=float("inf")), "temperature", "finite number"),
        (_body().replace(b'"max_tokens": 2', b'"temperature": 1e400'), "temperature", "finite"),
        (_body(temperature="0.5"), "temperature", "valid number (got '0.5')"),
        (_body(max_tokens=2.0), "max_tokens", "valid integer"),
        (_body(max_completion_tokens=False), "max_completion_tokens", "valid integer"),
        (_body(max_completion_tokens=2**40), "max_completion_tokens", "less than or equal"),
        (_body(n=True), "n", "valid integer"),
        (_body(n=17), "n", "less than or equal to 16"),
        (_body(top_p=0), "top_p", "greater than 0"),
        (_body(top_p=True), "top_p", "valid number"),
        (_body(seed=-(2**63) - 1), "seed", "greater than or equal to -9223372036854775808"),
        (_body(seed=1.5), "seed", "valid integer"),
        (_body(stream=1), "stream", "valid boolean"),
        (_body(stop=["a"] * 5), "stop", "at most 4 items"),
        (_body(stop="x" * 513), "stop", "at most 512 characters"),
        (_body(stop=["ok", "x" * 513]), "stop.1", "at most 512 characters"),
        (_body(stop=[1]), "stop.0", "valid string"),
        (_body(messages=[{"role": "user", "content": "x"}] * 4097), "messages", "at most 4096"),
        (_body(messages=[{"role": "tool", "content": "x"}]), "messages.0.role", "'tool'"),
        (_body(messages=[{"role": "user", "content": 5}]), "messages.0.content", "valid string"),
        (
            _body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            "messages.0.content.0.type",
            "Input should be 'text'",
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
            "messages.0.content.0.text",
            "valid string",
        ),
        (_body(user=["a"]), "user", "valid string"),
        (  # llguidance cannot serialize integers past int64: it was a 500
            _body(
                max_tokens=50,
                response_format={
                    "type": "json_schema",
                    "json_schema": {
                        "schema": {"type": "integer", "minimum": -(10**40), "maximum": 10**40}
                    },
                },
            ),
            "response_format",
            "cannot compile",
        ),
        (_body(stream_options={"include_usage": "yes"}), "stream_options.include_usage", "boolean"),
    ],
)
def test_client_mistakes_are_openai_shaped_400s(server, body, param, needle):
    response = httpx.post(f"{server.url}/chat/completions", content=body, headers=JSON, timeout=60)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert needle in error["message"], error["message"]


def test_a_temperature_too_small_to_sample_with_is_greedy(server):
    """1e-300 made the sampling probabilities NaN (a 500): below 1e-3 the answer is greedy."""
    client = server.client()
    kwargs = dict(model="builtin:tiny", messages=HI, max_tokens=8)
    greedy = client.chat.completions.create(temperature=0, **kwargs).choices[0].message.content
    for tiny in (1e-300, 5e-324, 9e-4):
        reply = client.chat.completions.create(temperature=tiny, **kwargs)
        assert reply.choices[0].message.content == greedy


@pytest.mark.parametrize("stream", [False, True])
def test_greedy_with_n_gives_n_equal_choices(server, stream):
    """transformers refuses n > 1 without sampling: a 500 (found by test_property.py)."""
    client = server.client()
    kwargs = dict(model="builtin:tiny", messages=HI, max_tokens=5, temperature=0)
    one = client.chat.completions.create(**kwargs).choices[0].message.content
    reply = client.chat.completions.create(n=3, stream=stream, **kwargs)
    if not stream:
        assert [c.message.content for c in reply.choices] == [one] * 3
        return
    texts = ["", "", ""]
    for chunk in reply:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [one] * 3


def _post_together(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async def main():
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [client.post(f"{url}/chat/completions", json=b) for b in bodies]
            return await asyncio.gather(*calls)

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("bad", "status"), [({"temperature": 1e-300}, 200), ({"seed": 10**30}, 400)]
)
def test_bad_requests_do_not_cost_their_batch_its_answers(server, bad, status):
    """Issue 21: 4 normal and 4 bad requests at once all got 500 (one engine exception was set
    on every future of the batch). Now the normal ones get what they get alone."""
    normal = {"messages": HI, "max_tokens": 6, "temperature": 0}
    alone = _post_together(server.url, [normal])[0].json()["choices"][0]["message"]["content"]
    responses = _post_together(server.url, [normal, {**normal, **bad}] * 4)
    assert [r.status_code for r in responses] == [200, status] * 4
    for r in responses[::2]:
        assert r.json()["choices"][0]["message"]["content"] == alone
    for r in responses[1::2]:
        assert "error" in r.json() if status != 200 else "choices" in r.json()


def test_a_seeded_answer_does_not_depend_on_its_neighbours(server):
    """Requests with one seed shared a batch, and so one random generator: each drew a different
    sample than it drew alone."""
    seeded = {"messages": HI, "max_tokens": 8, "temperature": 1.0, "seed": 11}
    alone = _post_together(server.url, [seeded])[0].json()["choices"][0]["message"]["content"]
    together = _post_together(server.url, [seeded] * 4 + [{**seeded, "seed": None}] * 2)
    answers = [r.json()["choices"][0]["message"]["content"] for r in together[:4]]
    assert answers == [alone] * 4


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),  # what a web page may send to localhost without a CORS preflight
        ("application/x-www-form-urlencoded", 415),
        (None, 415),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
    ],
)
def test_only_json_is_accepted(server, content_type, status):
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(
        f"{server.url}/chat/completions", content=_body(), headers=headers, timeout=60
    )
    assert response.status_code == status, response.text
    if status == 415:
        assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example:8000", 403),  # a page's own name, resolved to 127.0.0.1 (DNS rebinding)
        ("127.evil.example", 403),
        ("localhost:8000", 200),
        ("127.0.0.1", 200),
        ("[::1]:8000", 200),
    ],
)
def test_a_loopback_server_answers_loopback_host_names_only(server, host, status):
    response = httpx.post(
        f"{server.url}/chat/completions", content=_body(), headers={**JSON, "host": host}
    )
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["param"] == "host"


def test_no_cors_preflight_is_granted(server):
    """A page on another origin must ask before it POSTs JSON; the answer is no."""
    preflight = httpx.options(
        f"{server.url}/chat/completions",
        headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 405
    assert not any(h.startswith("access-control-") for h in preflight.headers)


def test_a_body_over_the_limit_is_a_413_before_it_is_read(server):
    """Issue 21: a 50 MB body got no answer in 120 s. Declared or chunked, it stops at 4 MiB."""
    big = _body(messages=[{"role": "user", "content": "word " * 10_000_000}])

    def chunks():
        for i in range(0, len(big), 1 << 16):
            yield big[i : i + (1 << 16)]

    for content in (big, chunks()):
        response = httpx.post(
            f"{server.url}/chat/completions", content=content, headers=JSON, timeout=60
        )
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "request_too_large"
    assert httpx.get(f"{server.url}/models", timeout=10).status_code == 200


def test_the_suite_starts_one_subprocess_server(server):
    assert STARTED == [server]


def test_eight_concurrent_requests(server):
    async def main():
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [
                client.post(
                    f"{server.url}/chat/completions",
                    json={"messages": HI, "max_tokens": 8, "seed": None},
                )
                for _ in range(8)
            ]
            return await asyncio.gather(*calls)

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 8


def test_serve_refuses_an_unset_key_variable(cli):
    result = cli("serve", "builtin:tiny", "--api-key-env", "LLMSCISCI_SURELY_UNSET")
    assert result.exit_code == 2 and "LLMSCISCI_SURELY_UNSET is not set" in result.output


def test_serve_on_a_taken_port_is_exit_2_before_loading(cli, monkeypatch):
    import socket

    from llmscisci_cfg.models import load

    def never(*args, **kwargs):
        raise AssertionError("the model loaded before the port was checked")

    monkeypatch.setattr(load, "open_model", never)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("serve", "builtin:tiny", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
    assert "serving" not in result.output
