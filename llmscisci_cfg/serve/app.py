"""The OpenAI-compatible HTTP API of `llmscisci serve` (FastAPI).

``GET /v1/models`` and ``POST /v1/chat/completions`` with the fields of
`llmscisci_cfg.serve.protocol.ChatRequest`: ``messages``, ``max_tokens`` (or
``max_completion_tokens``), ``temperature``, ``top_p``, ``seed``, ``n``, ``stop``,
structured output (``response_format`` ``json_schema`` or ``json_object``, vLLM's
``structured_outputs`` ``regex``/``json``, or ``answer_grammar``: a task's own answer grammar,
which makes this server answer exactly as a local run does), ``logprobs``/``top_logprobs`` and
``stream`` (server-sent events). Prompts are rendered with the model's (for a run: its
training) chat template, whose name and sha256 ``/v1/models`` reports.

A request passes these gates in order, and every answer, error or not, is JSON in OpenAI's
shape ``{"error": {"message", "type", "param", "code"}}``:

1. on a loopback server, a ``Host`` header naming loopback (403): a web page that has its own
   domain name resolve to 127.0.0.1 (DNS rebinding) sends that name;
2. the API key, when one is set, on every path (401);
3. the route (404, 405);
4. ``Content-Type: application/json`` (415): a web page can send a ``text/plain`` POST to a
   loopback server without asking, but not a JSON one (that needs a CORS preflight, which this
   server never grants);
5. the body's size, read incrementally up to ``max_body_bytes`` (413);
6. the request itself (`protocol.parse_request`: 400), the model name (404), and the prompt
   against the context (400), rendered and tokenized in a worker thread, never on the event
   loop, so a large prompt does not hold up other clients.

Then the request joins a batch (`llmscisci_cfg.serve.batcher`). A client that disconnects while
it waits, or mid-stream, cancels its request: dropped from the queue, or its rows stopped at the
next decode step. An engine failure reaches only the request that caused it, as a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest  # FastAPI reads handler annotations

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models.generate import Completion, Request, Sampling
from llmscisci_cfg.serve.batcher import Batcher, Ticket
from llmscisci_cfg.serve.protocol import APIError, ChatRequest, parse_request

#: ``max_tokens`` when a request gives none (and the context allows).
DEFAULT_MAX_TOKENS = 512
#: The largest request body read, in bytes (``llmscisci serve --max-body-bytes``).
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

log = logging.getLogger("llmscisci.serve")


@dataclass(frozen=True)
class Prepared:
    """A parsed request, its engine request and the prompt's length in tokens."""

    chat: ChatRequest
    request: Request
    prompt_tokens: int


def create_app(
    batcher: Batcher,
    tokenizer: Any,
    *,
    model_name: str,
    max_context: int,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    loopback_only: bool = False,
    template: Any = None,
):
    """The FastAPI application serving ``batcher``'s engine as ``model_name``;
    ``loopback_only`` (a server bound to loopback) refuses other ``Host`` names; ``template``
    (a `models.refs.TemplateRef`): the chat template `/v1/models` reports."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    # nothing but the two routes: no /docs, no /openapi.json
    app = FastAPI(title="llmscisci serve", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())
    if api_key is not None:
        app.add_middleware(RequireKey, key=api_key)
    if loopback_only:  # added last, so it runs first
        app.add_middleware(LoopbackHost)

    @app.exception_handler(APIError)
    async def _api_error(_request: HTTPRequest, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(404)
    async def _not_found(_request: HTTPRequest, _exc):
        return JSONResponse(APIError(404, "no such endpoint").body(), status_code=404)

    @app.exception_handler(405)
    async def _not_allowed(_request: HTTPRequest, _exc):
        return JSONResponse(APIError(405, "method not allowed").body(), status_code=405)

    @app.exception_handler(UserError)
    async def _user_error(_request: HTTPRequest, exc: UserError):
        return JSONResponse(APIError(400, str(exc)).body(), status_code=400)

    @app.exception_handler(Exception)
    async def _bug(_request: HTTPRequest, exc: Exception):  # uvicorn logs its traceback
        error = APIError(500, f"internal error: {type(exc).__name__}: {exc}")
        return JSONResponse(error.body(), status_code=500)

    def prepare(raw: bytes) -> Prepared:
        chat = parse_request(raw)
        if chat.model not in (None, model_name):
            shown = chat.model if len(chat.model) <= 100 else chat.model[:97] + "..."
            raise APIError(404, f"no model {shown!r}; this server has {model_name!r}", "model")
        request, prompt_tokens = _engine_request(chat, tokenizer, max_context)
        return Prepared(chat, request, prompt_tokens)

    @app.get("/v1/models")
    async def models():
        entry = {"id": model_name, "object": "model", "created": created, "owned_by": "llmscisci"}
        if template is not None:  # which chat template prompts are rendered with
            entry["llmscisci"] = {
                "chat_template": {"name": template.name, "sha256": template.sha256},
                "answer_grammar": True,
            }
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HTTPRequest):
        _require_json(request.headers)
        raw = await _read_body(request, max_body_bytes)
        prepared = await asyncio.to_thread(prepare, raw)  # parse, render, tokenize: off the loop
        response_id = f"chatcmpl-{secrets.token_hex(12)}"
        if prepared.chat.stream:
            return StreamingResponse(
                _stream(batcher, prepared, response_id, model_name), media_type="text/event-stream"
            )
        completions = await _completions(batcher.submit(prepared.request), request)
        return _response(completions, response_id, model_name, prepared.prompt_tokens)

    return app


def is_loopback(host: str) -> bool:
    """Whether ``--host`` binds loopback only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackHost:
    """ASGI middleware for a server bound to loopback: a request whose ``Host`` header names
    anything but loopback is refused (403). A browser sends the page's own host name, so a page
    that made its name resolve to 127.0.0.1 (DNS rebinding) cannot use the server."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "localhost").lower()
            name = host if host.endswith("]") else host.rsplit(":", 1)[0]  # without the port
            if not is_loopback(name.removeprefix("[").removesuffix("]")):
                from fastapi.responses import JSONResponse

                error = APIError(
                    403,
                    f"this server listens on loopback and answers only Host names of loopback, "
                    f"not {name[:100]!r} (serve --host to listen elsewhere)",
                    "host",
                    kind="permission_error",
                )
                await JSONResponse(error.body(), status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequireKey:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer KEY`` (401 otherwise),
    whatever its path, so nothing at all is served to a caller without the key."""

    def __init__(self, app: Any, key: str):
        self.app, self.expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            given = Headers(scope=scope).get("authorization", "").encode("latin-1")
            if not secrets.compare_digest(given, self.expected):
                from fastapi.responses import JSONResponse

                error = APIError(401, "invalid or missing API key", kind="authentication_error")
                await JSONResponse(error.body(), status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _require_json(headers: Headers) -> None:
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise APIError(
            415,
            f"Content-Type must be application/json, not {media or 'missing'!r}",
            code="unsupported_media_type",
        )


async def _read_body(request: HTTPRequest, limit: int) -> bytes:
    """The body, read as it arrives and refused (413) once it passes ``limit`` bytes."""
    too_large = APIError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes "
        "(llmscisci serve --max-body-bytes)",
        code="request_too_large",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:
        raise APIError(499, "the client closed the request") from None
    return bytes(body)


def _constraint(chat: ChatRequest):
    """The structured-output constraint the request asks for (`protocol`: one of
    ``answer_grammar``, ``structured_outputs`` or ``response_format``), or None."""
    from llmscisci_cfg.task.grammar import Constraint

    fmt = chat.response_format
    asked = {
        "answer_grammar": chat.answer_grammar is not None,
        "structured_outputs": chat.structured_outputs is not None,
        "response_format": fmt is not None and fmt.type != "text",
    }
    if sum(asked.values()) > 1:
        both = " and ".join(k for k, v in asked.items() if v)
        raise APIError(400, f"give one kind of structured output, not {both}", "response_format")
    try:
        if chat.answer_grammar is not None:
            try:
                return Constraint.from_wire(chat.answer_grammar)
            except ValueError as exc:
                raise APIError(400, f"answer_grammar: {exc}", "answer_grammar") from None
        if chat.structured_outputs is not None:
            outputs = chat.structured_outputs
            if (outputs.regex is None) == (outputs.json_ is None):
                raise APIError(
                    400, "structured_outputs: give one of regex or json", "structured_outputs"
                )
            if outputs.regex is not None:
                return Constraint.regex_pattern(outputs.regex)
            return Constraint.json_schema(outputs.json_)
        if not asked["response_format"]:
            return None
        if fmt.type == "json_object":
            return Constraint.json_object()
        if fmt.json_schema is None:
            raise APIError(
                400,
                "response_format: give {type: json_schema, json_schema: {schema: …}}",
                "response_format",
            )
        return Constraint.json_schema(fmt.json_schema.schema_)
    except UserError as exc:
        where = next(k for k, v in asked.items() if v)
        raise APIError(400, f"{where}: {exc}", where) from None


def _engine_request(chat: ChatRequest, tokenizer: Any, max_context: int) -> tuple[Request, int]:
    """The engine request for ``chat`` and its prompt's length; a 400 for a prompt or budget
    that does not fit the context, or a constraint that cannot fit the budget."""
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
    sampling = Sampling(
        max_new_tokens=wanted or min(DEFAULT_MAX_TOKENS, room),
        temperature=chat.decode_temperature,
        top_p=chat.top_p,
        seed=chat.seed,
        n=chat.n,
        stop=chat.stop_strings,
        logprobs=chat.logprobs or bool(chat.top_logprobs),
        top_logprobs=chat.top_logprobs or 0,
    )
    request = Request(prompt=prompt, sampling=sampling, constraint=_constraint(chat))
    if request.constraint is not None:  # a grammar that cannot compile or fit: the request's
        from llmscisci_cfg.models.structured import compile_check

        try:
            compile_check(tokenizer, request.constraint, sampling.max_new_tokens)
        except UserError as exc:
            raise APIError(400, f"structured output: {exc}", "response_format") from None
    return request, prompt_tokens


def _engine_error(exc: BaseException) -> APIError:
    """What a request whose generation failed hears: a `UserError` is its own mistake (400);
    anything else is a failure of ours (500, logged with its traceback)."""
    if isinstance(exc, UserError):
        return APIError(400, str(exc))
    log.error("generation failed", exc_info=(type(exc), exc, exc.__traceback__))
    return APIError(500, f"generation failed: {type(exc).__name__}: {exc}")


async def _completions(ticket: Ticket, http: HTTPRequest) -> list[Completion]:
    """The ticket's completions; if the client disconnects first, the ticket is cancelled."""
    answer = asyncio.wrap_future(ticket.future)
    gone = asyncio.ensure_future(_disconnected(http))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not answer.done():  # the client left (or the server is stopping)
            ticket.cancel()
    if not answer.done():
        raise APIError(499, "the client closed the request")
    try:
        return answer.result()
    except Exception as exc:
        raise _engine_error(exc) from None


async def _disconnected(http: HTTPRequest) -> None:
    """Returns once the client has disconnected (the body has been read already)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


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
                "logprobs": logprobs_json(c),
            }
            for i, c in enumerate(completions)
        ],
        "usage": _usage(completions, prompt_tokens),
    }


def logprobs_json(completion: Completion) -> dict[str, Any] | None:
    """A completion's token log-probabilities in OpenAI's shape (``content``: one entry per
    token with its text, log-probability, UTF-8 bytes and ``top_logprobs``), or None."""
    if completion.logprobs is None:
        return None
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.bytes),
                "top_logprobs": [
                    {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}
                    for text, value in t.top
                ],
            }
            for t in completion.logprobs
        ],
        "refusal": None,
    }


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _chunk(
    response_id: str,
    model: str,
    index: int,
    delta: dict,
    finish: str | None = None,
    logprobs: dict[str, Any] | None = None,
) -> str:
    return _event(
        {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
            ],
        }
    )


async def _stream(
    batcher: Batcher, prepared: Prepared, response_id: str, model: str
) -> AsyncIterator[str]:
    """Server-sent events: a role chunk per choice, text deltas as rows decode, a final chunk
    per choice with its finish reason, then ``[DONE]``. With ``stop`` strings the text is held
    back to the end (a stop string may arrive in pieces). A client that goes away mid-stream
    (Starlette then cancels this generator) cancels the request."""
    request, n = prepared.request, prepared.request.sampling.n
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    incremental = not request.sampling.stop

    def on_text(sample: int, text: str) -> None:
        if incremental:
            loop.call_soon_threadsafe(pieces.put_nowait, (sample, text))

    ticket = batcher.submit(request, on_text=on_text)
    try:
        future = asyncio.wrap_future(ticket.future)
        sent = [""] * n
        for i in range(n):
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
        except Exception as exc:
            yield _event(_engine_error(exc).body())
            return
        for i, c in enumerate(completions):
            rest = c.text[len(sent[i]) :] if c.text.startswith(sent[i]) else c.text
            if rest:
                yield _chunk(response_id, model, i, {"content": rest})
            # the log-probabilities of every token arrive with the last chunk (clients join
            # the `content` lists of a stream's chunks)
            yield _chunk(response_id, model, i, {}, c.finish_reason, logprobs_json(c))
        chat = prepared.chat
        if chat.stream_options is not None and chat.stream_options.include_usage:
            usage = _usage(completions, prepared.prompt_tokens)
            yield _event(
                {
                    "id": response_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        yield "data: [DONE]\n\n"
    finally:
        ticket.cancel()  # a no-op once answered; a client gone mid-stream stops its rows
