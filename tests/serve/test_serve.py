"""`llmscisci serve`: a real server on loopback, the official openai client and raw HTTP."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve_helpers import start, stop

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
    response = httpx.post(f"{server.url}/chat/completions", content=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["type"] in ("invalid_request_error",)
    ok = httpx.post(
        f"{server.url}/chat/completions", json={"messages": HI, "max_tokens": 2}, timeout=60
    )
    assert ok.status_code == 200


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


def test_requests_that_arrive_together_share_a_batch():
    """In-process: the batcher generated the 8 requests in fewer than 8 engine calls."""
    from llmscisci_cfg.models.generate import TransformersEngine
    from llmscisci_cfg.models.load import for_generation, job_for_model, load_tokenizer
    from llmscisci_cfg.models.tiny import build_tiny_model
    from llmscisci_cfg.serve.app import create_app
    from llmscisci_cfg.serve.batcher import Batcher

    tokenizer = for_generation(load_tokenizer(job_for_model("builtin:tiny")))
    engine = TransformersEngine(build_tiny_model("builtin:tiny", 0), tokenizer, batch_size=8)
    batcher = Batcher(engine, max_batch=8, window=0.2)
    app = create_app(batcher, tokenizer, model_name="tiny", max_context=2048)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {"messages": HI, "max_tokens": 4}
            return await asyncio.gather(
                *[client.post("/v1/chat/completions", json=body) for _ in range(8)]
            )

    try:
        responses = asyncio.run(main())
    finally:
        batcher.close()
    assert [r.status_code for r in responses] == [200] * 8
    assert sum(batcher.batches) == 8 and len(batcher.batches) < 8


def test_api_key_is_required_when_configured():
    server = start("--api-key-env", "LLMSCISCI_TEST_KEY", env={"LLMSCISCI_TEST_KEY": "secret"})
    try:
        import openai

        with pytest.raises(openai.AuthenticationError):
            server.client(api_key="wrong").models.list()
        assert [m.id for m in server.client(api_key="secret").models.list().data] == [
            "builtin:tiny"
        ]
        raw = httpx.post(f"{server.url}/chat/completions", json={"messages": HI})
        assert raw.status_code == 401 and raw.json()["error"]["type"] == "authentication_error"
    finally:
        stop(server)


def test_serve_refuses_an_unset_key_variable(cli):
    result = cli("serve", "builtin:tiny", "--api-key-env", "LLMSCISCI_SURELY_UNSET")
    assert result.exit_code == 2 and "LLMSCISCI_SURELY_UNSET is not set" in result.output


def test_serve_on_a_taken_port_is_exit_2_before_loading(cli, monkeypatch):
    import socket

    from llmscisci_cfg.models import load

    def never(*args, **kwargs):
        raise AssertionError("the model loaded before the port was checked")

    monkeypatch.setattr(load, "load_for_serving", never)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("serve", "builtin:tiny", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
    assert "serving" not in result.output
