"""The serve app with the in-process tiny engine: clients that leave stop their work (counted in
forward passes), prompts are prepared off the event loop, an engine failure is one request's
JSON 500, and an API key guards every path."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest

from llmscisci_cfg.serve.app import create_app
from llmscisci_cfg.serve.batcher import Batcher
from tests.serve.conftest import HI, app_client

LONG = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2000, "temperature": 0}


def _app(tiny, engine=None, window=0.01, **kwargs):
    batcher = Batcher(engine or tiny.engine, max_batch=8, window=window)
    app = create_app(
        batcher,
        kwargs.pop("tokenizer", tiny.tokenizer),
        model_name="builtin:tiny",
        max_context=tiny.max_context,
        **kwargs,
    )
    return app, batcher


def _after(live) -> None:
    """A short request: once it is answered, the engine thread has finished what came before."""
    response = httpx.post(f"{live.url}/chat/completions", json={**LONG, "max_tokens": 2})
    assert response.status_code == 200


def test_the_long_request_runs_to_its_budget(live, forward_passes):
    """What the two tests below cut short: greedy, this prompt meets no stop token."""
    response = httpx.post(f"{live.url}/chat/completions", json={**LONG, "max_tokens": 150})
    assert response.json()["usage"]["completion_tokens"] == 150
    assert len(forward_passes) >= 150


def test_a_stream_dropped_after_a_few_chunks_stops_generating(live, forward_passes):
    """Issue 21: after 5 dropped streams the next request waited 39.5 s behind them. Now the
    engine stops within a few steps of each drop, instead of decoding ~2000 tokens for nobody."""
    for _ in range(5):
        with httpx.stream(
            "POST", f"{live.url}/chat/completions", json={**LONG, "stream": True}
        ) as r:
            events = (line[6:] for line in r.iter_lines() if line.startswith("data: "))
            chunks = [json.loads(next(events)) for _ in range(6)]  # the role, then 5 tokens
            assert chunks[-1]["choices"][0]["delta"]["content"]
        dropped_at = len(forward_passes)
        _after(live)
        assert len(forward_passes) - dropped_at < 100


def test_a_request_dropped_while_waiting_stops_generating(live, forward_passes):
    """Issue 21: after 3 dropped non-streaming requests the next waited 26.5 s."""
    for _ in range(3):
        with pytest.raises(httpx.ReadTimeout):
            timeout = httpx.Timeout(60, read=0.5)
            httpx.post(f"{live.url}/chat/completions", json=LONG, timeout=timeout)
        dropped_at = len(forward_passes)
        assert dropped_at > 0  # it was generating
        _after(live)
        assert len(forward_passes) - dropped_at < 100


class ThreadSpy:
    """The tokenizer, recording the thread of every call made through it."""

    def __init__(self, tokenizer):
        self._tokenizer, self.threads = tokenizer, []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        self.threads.append(threading.current_thread())
        return self._tokenizer(*args, **kwargs)

    def apply_chat_template(self, *args, **kwargs):
        self.threads.append(threading.current_thread())
        return self._tokenizer.apply_chat_template(*args, **kwargs)


def test_prompts_are_rendered_and_tokenized_off_the_event_loop(tiny):
    """Issue 21: during a 4 MB body, GET /v1/models waited 7.7 s for the loop."""
    spy = ThreadSpy(tiny.tokenizer)
    app, batcher = _app(tiny, tokenizer=spy)

    async def main():
        async with app_client(app) as client:
            loop_thread = threading.current_thread()
            response = await client.post("/v1/chat/completions", json={**LONG, "max_tokens": 2})
            return loop_thread, response

    try:
        loop_thread, response = asyncio.run(main())
    finally:
        batcher.close()
    assert response.status_code == 200
    assert len(spy.threads) == 2 and loop_thread not in spy.threads


def test_a_body_limit_can_be_set(tiny):
    app, batcher = _app(tiny, max_body_bytes=2048)
    small = json.dumps({**LONG, "max_tokens": 2}).encode()
    large = json.dumps({**LONG, "user": "x" * 2048}).encode()

    async def main():
        async with app_client(app) as client:
            post = [
                client.post(
                    "/v1/chat/completions",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                for body in (small, large)
            ]
            return await asyncio.gather(*post)

    try:
        ok, refused = asyncio.run(main())
    finally:
        batcher.close()
    assert ok.status_code == 200
    assert (
        refused.status_code == 413 and "limit of 2048 bytes" in refused.json()["error"]["message"]
    )


class Flaky:
    """The tiny engine, failing every call that includes a prompt with BOOM in it."""

    def __init__(self, engine):
        self.engine = engine

    def generate(self, requests, **kwargs):
        if any("BOOM" in r.prompt for r in requests):
            raise RuntimeError("the engine broke")
        return self.engine.generate(requests, **kwargs)


def test_an_engine_failure_is_a_json_500_for_its_request_only(tiny):
    app, batcher = _app(tiny, engine=Flaky(tiny.engine), window=0.3)
    good = {**LONG, "max_tokens": 4}
    boom = {**good, "messages": [{"role": "user", "content": "BOOM"}]}

    async def main():
        async with app_client(app) as client:
            alone = await client.post("/v1/chat/completions", json=good)
            url = "/v1/chat/completions"
            together = await asyncio.gather(
                *[client.post(url, json=b) for b in [good, good, boom, good]],
                client.post(url, json={**boom, "stream": True}),
            )
            return alone, together

    try:
        alone, together = asyncio.run(main())
    finally:
        batcher.close()
    assert [r.status_code for r in together] == [200, 200, 500, 200, 200]
    answer = alone.json()["choices"][0]["message"]["content"]
    for r in together[:2] + together[3:4]:
        assert r.json()["choices"][0]["message"]["content"] == answer
    error = together[2].json()["error"]
    assert error["type"] == "server_error" and "the engine broke" in error["message"]
    events = [line[6:] for line in together[4].text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["type"] == "server_error"
    assert batcher.retried > 0


def test_api_key_guards_every_path(tiny):
    """Issue 21: /openapi.json was served without the key. Nothing is, now (and no path serves
    an OpenAPI document: the routes take raw requests, so it described nothing)."""
    import openai

    app, batcher = _app(tiny, api_key="secret")
    key = {"authorization": "Bearer secret"}

    async def main():
        async with app_client(app) as client:
            bare = [
                await client.get("/v1/models"),
                await client.get("/v1/models", headers={"authorization": "Bearer wrong"}),
                await client.get("/openapi.json"),
                await client.get("/docs"),
                await client.get("/nowhere"),
                await client.post("/v1/chat/completions", json={**LONG, "max_tokens": 2}),
            ]
            keyed = [
                await client.get("/v1/models", headers=key),
                await client.get("/openapi.json", headers=key),
                await client.post(
                    "/v1/chat/completions", json={**LONG, "max_tokens": 2}, headers=key
                ),
            ]
            sdk = openai.AsyncOpenAI(
                base_url="http://test/v1", api_key="wrong", http_client=client, max_retries=0
            )
            with pytest.raises(openai.AuthenticationError):
                await sdk.models.list()
            sdk = sdk.with_options(api_key="secret")
            listed = [m.id for m in (await sdk.models.list()).data]
            return bare, keyed, listed

    try:
        bare, keyed, listed = asyncio.run(main())
    finally:
        batcher.close()
    assert [r.status_code for r in bare] == [401] * 6
    assert {r.json()["error"]["type"] for r in bare} == {"authentication_error"}
    assert [r.status_code for r in keyed] == [200, 404, 200]
    assert listed == ["builtin:tiny"]


def test_without_a_key_there_is_no_openapi_document_either(tiny):
    app, batcher = _app(tiny)

    async def main():
        async with app_client(app) as client:
            return await client.get("/openapi.json")

    try:
        response = asyncio.run(main())
    finally:
        batcher.close()
    assert response.status_code == 404 and response.json()["error"]["message"] == "no such endpoint"


def test_requests_that_arrive_together_share_a_batch(tiny):
    """In-process: the batcher generated the 8 requests in fewer than 8 engine calls."""
    app, batcher = _app(tiny, window=0.2)

    async def main():
        async with app_client(app) as client:
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
