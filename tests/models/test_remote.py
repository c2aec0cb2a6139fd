"""The ``openai`` backend against a recording OpenAI-compatible server: which form of the
answer grammar each kind of server receives, what comes back (kept as it came), log-probabilities,
and answers that are not chat completions."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models.generate import Request, Sampling
from llmscisci_cfg.models.remote import OpenAIEngine
from llmscisci_cfg.task.constraints import LabelRule
from llmscisci_cfg.task.grammar import Constraint

ANSWER = '{"think": "x", "label": [1, 0, 0, 0, 0]}'
CONSTRAINT = Constraint.think_label(5, rule=LabelRule(5, (4,), 1))


class Recorder:
    """A loopback server that records request bodies and answers with ``reply`` (bytes)."""

    def __init__(self, owner: str = "someone", reply: bytes | None = None):
        self.bodies: list[dict] = []
        self.owner = owner
        self.reply = reply
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body: bytes, kind: str = "application/json"):
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                models = {"data": [{"id": "m", "object": "model", "owned_by": recorder.owner}]}
                self._send(json.dumps({"object": "list", **models}).encode())

            def do_POST(self):
                size = int(self.headers["Content-Length"])
                recorder.bodies.append(json.loads(self.rfile.read(size)))
                self._send(recorder.reply if recorder.reply is not None else completion())

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()


def completion(text: str = ANSWER) -> bytes:
    tokens = [{"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []}
              for t in ("{", text[1:])]  # fmt: skip
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
        "logprobs": {"content": tokens},
    }
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}  # fmt: skip
    return json.dumps(body).encode()


@pytest.fixture
def recorder():
    made = []

    def make(**kwargs) -> Recorder:
        made.append(Recorder(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def ask(url: str, grammar: str, logprobs: bool = False):
    engine = OpenAIEngine(url, "m", grammar=grammar, max_retries=0, timeout=10)
    sampling = Sampling(max_new_tokens=64, logprobs=logprobs)
    request = Request(messages=[{"role": "user", "content": "hi"}], sampling=sampling,
                      constraint=CONSTRAINT)  # fmt: skip
    return engine, engine.generate([request])[0][0]


@pytest.mark.parametrize(
    ("owner", "grammar", "sent"),
    [
        ("llmscisci", "auto", "answer_grammar"),
        ("vllm", "auto", "structured_outputs"),
        ("openai", "auto", "response_format"),
        ("vllm", "json_schema", "response_format"),
        ("vllm", "llmscisci", "answer_grammar"),
        ("vllm", "regex", "structured_outputs"),
    ],
)
def test_each_server_gets_the_strongest_form_it_takes(recorder, owner, grammar, sent):
    server = recorder(owner=owner)
    engine, _ = ask(server.url, grammar)
    body = server.bodies[0]
    assert [
        k for k in ("answer_grammar", "structured_outputs", "response_format") if k in body
    ] == [sent]
    expected = {
        "answer_grammar": CONSTRAINT.to_wire(),
        "structured_outputs": {"regex": CONSTRAINT.regex()},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": CONSTRAINT.json_form(), "strict": True},
        },
    }[sent]
    assert body[sent] == expected
    assert body["max_tokens"] == 64


def test_none_sends_no_grammar_and_the_text_comes_back_as_it_came(recorder):
    server = recorder()
    _, answer = ask(server.url, "none")
    assert not {"answer_grammar", "structured_outputs", "response_format"} & set(server.bodies[0])
    assert answer.text == ANSWER  # `_raw` is what the server returned, never rewritten


def test_log_probabilities_are_asked_for_and_kept(recorder):
    server = recorder()
    _, answer = ask(server.url, "json_schema", logprobs=True)
    assert server.bodies[0]["logprobs"] is True
    assert [t.logprob for t in answer.logprobs] == [-0.5, -0.5]
    assert b"".join(t.bytes for t in answer.logprobs) == ANSWER.encode()


@pytest.mark.parametrize(
    "reply",
    [b"{not json", b"<html><body>Bad gateway</body></html>", json.dumps({"choices": []}).encode()],
    ids=["not json", "html", "no choices"],
)
def test_an_answer_that_is_no_chat_completion_is_a_user_error(recorder, reply):
    server = recorder(reply=reply)
    with pytest.raises(UserError, match="not an OpenAI chat completion"):
        ask(server.url, "json_schema")
