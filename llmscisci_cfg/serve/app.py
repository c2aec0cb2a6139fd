"""The OpenAI-compatible HTTP API of `llmscisci serve` (FastAPI).

``GET /v1/models`` and ``POST /v1/chat/completions`` with ``messages``, ``max_tokens`` (or
``max_completion_tokens``), ``temperature``, ``top_p``, ``seed``, ``n``, ``stop``,
``response_format`` (``json_schema``: constrained decoding, valid every time) and ``stream``
(server-sent events). Prompts are rendered with the model's (for a run: its training) chat
template. A malformed request gets a 4xx JSON error in OpenAI's shape and the server stays up;
a prompt longer than the model's context is a 400 naming the limit. With an API key, every
request needs ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request as HTTPRequest  # FastAPI reads handler annotations

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models.generate import Completion, Request, Sampling
from llmscisci_cfg.serve.batcher import Batcher

#: ``max_tokens`` when a request gives none (and the context allows).
DEFAULT_MAX_TOKENS = 512


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id …: accepted, not used
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: the text ones
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class JsonSchema(_Strict):
    name: str = "answer"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_schema", "json_object"]
    json_schema: JsonSchema | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    """The request fields this server understands; any other is a 400."""

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None


class APIError(Exception):
    """An error answered as ``{"error": {...}}`` with ``status``."""

    def __init__(
        self, status: int, message: str, param: str | None = None, kind: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}
        }


def create_app(
    batcher: Batcher,
    tokenizer: Any,
    *,
    model_name: str,
    max_context: int,
    api_key: str | None = None,
):
    """The FastAPI application serving ``batcher``'s engine as ``model_name``."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="llmscisci serve", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(_request: HTTPRequest, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(404)
    async def _not_found(_request: HTTPRequest, _exc):
        return JSONResponse(APIError(404, "no such endpoint").body(), status_code=404)

    @app.exception_handler(405)
    async def _not_allowed(_request: HTTPRequest, _exc):
        return JSONResponse(APIError(405, "method not allowed").body(), status_code=405)

    def authorize(request: HTTPRequest) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        if not secrets.compare_digest(header.encode(), f"Bearer {api_key}".encode()):
            raise APIError(401, "invalid or missing API key", kind="authentication_error")

    @app.get("/v1/models")
    async def models(request: HTTPRequest):
        authorize(request)
        entry = {"id": model_name, "object": "model", "created": created, "owned_by": "llmscisci"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HTTPRequest):
        authorize(request)
        body = await _json_body(request)
        chat = _parse(body)
        if chat.model not in (None, model_name):
            raise APIError(404, f"no model {chat.model!r}; this server has {model_name!r}", "model")
        engine_request, prompt_tokens = _engine_request(chat, tokenizer, max_context)
        response_id = f"chatcmpl-{secrets.token_hex(12)}"
        if chat.stream:
            return StreamingResponse(
                _stream(batcher, engine_request, chat, response_id, model_name, prompt_tokens),
                media_type="text/event-stream",
            )
        completions = await _completions(batcher, engine_request)
        return _response(completions, response_id, model_name, prompt_tokens)

    return app


async def _json_body(request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def _parse(body: dict[str, Any]) -> ChatRequest:
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise APIError(400, f"unrecognized request argument: {param}", param) from None
        raise APIError(400, f"{param}: {err['msg']}", param) from None


def _constraint(chat: ChatRequest):
    fmt = chat.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object" or fmt.json_schema is None:
        raise APIError(
            400,
            "response_format: give {type: json_schema, json_schema: {schema: …}}",
            "response_format",
        )
    from llmscisci_cfg.task.grammar import Constraint, check_schema

    schema = fmt.json_schema.schema_
    try:
        check_schema(schema)
    except UserError as exc:
        raise APIError(400, f"response_format.json_schema: {exc}", "response_format") from None
    return Constraint.json_schema(schema)


def _engine_request(chat: ChatRequest, tokenizer: Any, max_context: int) -> tuple[Request, int]:
    from llmscisci_cfg.models import chat as templates

    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in chat.messages
    ]
    try:
        prompt = templates.render(tokenizer, messages, add_generation_prompt=True)
    except UserError as exc:
        raise APIError(400, f"messages: {exc}", "messages") from None
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    room = max_context - prompt_tokens
    wanted = chat.max_completion_tokens or chat.max_tokens
    if room < 1 or (wanted is not None and wanted > room):
        asked = f" and asks for {wanted} more" if wanted else ""
        raise APIError(
            400,
            f"this model's maximum context length is {max_context} tokens; the prompt has "
            f"{prompt_tokens} tokens{asked}",
            "messages" if room < 1 else "max_tokens",
        )
    stop = (chat.stop,) if isinstance(chat.stop, str) else tuple(chat.stop or ())
    sampling = Sampling(
        max_new_tokens=wanted or min(DEFAULT_MAX_TOKENS, room),
        temperature=chat.temperature,
        top_p=chat.top_p,
        seed=chat.seed,
        n=chat.n,
        stop=stop,
    )
    request = Request(prompt=prompt, sampling=sampling, constraint=_constraint(chat))
    try:
        if request.constraint is not None:  # a bound that cannot fit is the request's fault
            request.constraint.grammar(tokenizer, sampling.max_new_tokens)
    except UserError as exc:
        raise APIError(400, f"response_format: {exc}", "response_format") from None
    return request, prompt_tokens


async def _completions(batcher: Batcher, request: Request) -> list[Completion]:
    try:
        return await asyncio.wrap_future(batcher.submit(request))
    except UserError as exc:
        raise APIError(400, str(exc)) from None


def _usage(completions: list[Completion], prompt_tokens: int) -> dict[str, int]:
    generated = sum(c.completion_tokens for c in completions)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": generated,
        "total_tokens": prompt_tokens + generated,
    }


def _response(completions: list[Completion], response_id: str, model: str, prompt_tokens: int):
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
                "logprobs": None,
            }
            for i, c in enumerate(completions)
        ],
        "usage": _usage(completions, prompt_tokens),
    }


def _chunk(response_id: str, model: str, index: int, delta: dict, finish: str | None = None) -> str:
    data = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return f"data: {json.dumps(data)}\n\n"


async def _stream(
    batcher: Batcher,
    request: Request,
    chat: ChatRequest,
    response_id: str,
    model: str,
    prompt_tokens: int,
) -> AsyncIterator[str]:
    """Server-sent events: a role chunk per choice, text deltas as rows decode, a final chunk
    per choice with its finish reason, then ``[DONE]``. With ``stop`` strings the text is held
    back to the end (a stop string may arrive in pieces)."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    incremental = not request.sampling.stop

    def on_text(sample: int, text: str) -> None:
        if incremental:
            loop.call_soon_threadsafe(pieces.put_nowait, (sample, text))

    future = asyncio.wrap_future(batcher.submit(request, on_text=on_text))
    sent = [""] * request.sampling.n
    for i in range(request.sampling.n):
        yield _chunk(response_id, model, i, {"role": "assistant", "content": ""})
    while not future.done() or not pieces.empty():
        getter = asyncio.ensure_future(pieces.get())
        done, _ = await asyncio.wait({getter, future}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            continue
        sample, text = getter.result()
        if text.startswith(sent[sample]) and "\ufffd" not in text[len(sent[sample]) :]:
            yield _chunk(response_id, model, sample, {"content": text[len(sent[sample]) :]})
            sent[sample] = text
    try:
        completions = future.result()
    except UserError as exc:
        yield f"data: {json.dumps(APIError(400, str(exc)).body())}\n\n"
        return
    for i, c in enumerate(completions):
        rest = c.text[len(sent[i]) :] if c.text.startswith(sent[i]) else c.text
        if rest:
            yield _chunk(response_id, model, i, {"content": rest})
        yield _chunk(response_id, model, i, {}, c.finish_reason)
    if chat.stream_options is not None and chat.stream_options.include_usage:
        usage = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": _usage(completions, prompt_tokens),
        }
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"
