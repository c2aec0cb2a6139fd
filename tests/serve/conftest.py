"""Fixtures for the server tests (`llmscisci_cfg.serve`).

The session's one `llmscisci serve builtin:tiny` subprocess is ``server`` in tests/conftest.py
(helpers in tests/serve_helpers.py): most tests go through it, with the official `openai` client
and raw HTTP. Tests that must see inside the server (the engine's forward passes after a client
drops, the threads prompts are tokenized on, an engine that fails, an API key) use ``tiny`` (the
tiny model and an engine built in-process, once) and ``live`` (uvicorn serving that engine in a
thread, on a real loopback socket); an app with an API key is driven in-process by `app_client`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

HI = [{"role": "user", "content": "Classify: the code was public."}]


@dataclass
class Tiny:
    model: Any
    tokenizer: Any
    engine: Any
    max_context: int


@dataclass
class Live:
    url: str
    tiny: Tiny
    batcher: Any


@pytest.fixture(scope="session")
def tiny() -> Tiny:
    from llmscisci_cfg.models.generate import TransformersEngine
    from llmscisci_cfg.models.load import max_context, open_tokenizer
    from llmscisci_cfg.models.refs import family_template, named_model
    from llmscisci_cfg.models.tiny import build_tiny_model

    tokenizer, _ = open_tokenizer(named_model("builtin:tiny"), family_template("builtin:tiny"))
    model = build_tiny_model("builtin:tiny", 0)
    engine = TransformersEngine(model, tokenizer, batch_size=8)
    return Tiny(model, tokenizer, engine, max_context(model, tokenizer))


@pytest.fixture(scope="session")
def live(tiny):
    """uvicorn serving the in-process tiny engine on a loopback port, as `llmscisci serve` does."""
    import uvicorn

    from llmscisci_cfg.cli.serve import listening_socket
    from llmscisci_cfg.serve.app import create_app
    from llmscisci_cfg.serve.batcher import Batcher

    batcher = Batcher(tiny.engine, max_batch=8)
    app = create_app(
        batcher, tiny.tokenizer, model_name="builtin:tiny", max_context=tiny.max_context
    )
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the in-process server did not start"
    yield Live(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", tiny, batcher)
    server.should_exit = True
    thread.join(timeout=10)
    batcher.close()
    sock.close()


@pytest.fixture
def forward_passes(tiny):
    """A list that grows by one with each forward pass of the tiny model."""
    calls: list[int] = []
    handle = tiny.model.register_forward_hook(lambda *args: calls.append(1))
    yield calls
    handle.remove()


def app_client(app) -> httpx.AsyncClient:
    """An async HTTP client that calls ``app`` in-process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
