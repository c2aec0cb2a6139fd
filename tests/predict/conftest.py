"""Fixtures for the prediction tests (`llmscisci_cfg.predict`): the tiny model, the sample,
and a misbehaving OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture(autouse=True)
def _private_cache(isolated_cache):
    """Datasets built here go to a per-session cache, never to ~/.cache."""


class FakeServer:
    """A loopback HTTP server that answers every ``POST …/chat/completions`` with one fixed
    body (status 200): a chat completion (`reply`) or anything else (`answer`). It knows no
    models (``GET /v1/models`` is 404). ``asked`` counts the requests."""

    def __init__(self) -> None:
        self.body, self.content_type, self.asked = b"", "application/json", 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_error(404)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.asked += 1
                self.send_response(200)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: str | bytes, content_type: str = "application/json") -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type

    def reply(self, text: str, **choice) -> None:
        """Answer a chat completion whose message is ``text``."""
        message = {"index": 0, "message": {"role": "assistant", "content": text}}
        body = {
            "object": "chat.completion",
            "choices": [message | {"finish_reason": "stop"} | choice],
        }
        self.answer(json.dumps(body | {"usage": {"prompt_tokens": 7, "completion_tokens": 5}}))

    def sets(self) -> tuple[str, ...]:
        """The ``--set`` options that point a recipe at this server."""
        return ("--set", "generation.backend=openai", "--set", f"generation.base_url={self.url}",
                "--set", "generation.max_retries=0")  # fmt: skip


@pytest.fixture(scope="session")
def _fake_server():
    server = FakeServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def fake_server(_fake_server) -> FakeServer:
    """The session's `FakeServer`, answering a valid label until told otherwise."""
    _fake_server.reply("<think>x</think>\n<label>[0, 0, 1, 0, 0]</label>")
    _fake_server.asked = 0
    return _fake_server
