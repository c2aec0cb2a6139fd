"""The OpenAI chat-completions request `llmscisci serve` accepts, and OpenAI-shaped errors.

A request is parsed from its bytes by pydantic (`parse_request`), so everything a client can get
wrong is a 400 here, before the request reaches a batch and can cost a neighbour its answer:

- the JSON itself: not JSON, not an object, nested deeper than the parser's limit, a lone
  surrogate (``"\\ud800"``), ``NaN``/``Infinity``;
- types are strict: ``true`` is not 1, ``"0.5"`` is not 0.5, ``1.0`` is not an int (an int is a
  float, as in JSON); every number is finite and bounded, every list and string that reaches
  the engine is bounded (`MAX_MESSAGES`, `MAX_STOP`, `MAX_STOP_CHARS`, `MAX_N`);
- ``seed`` is in the range ``torch.manual_seed`` takes (`SEED_MIN` … `SEED_MAX`);
- ``temperature`` below `MIN_TEMPERATURE` (but not 0) is decoded greedily: that is what sampling
  tends to as the temperature falls, and dividing the logits by 1e-300 overflows to NaN.

The prompt's length against the context is checked once it is rendered (`llmscisci_cfg.serve.app`).

Structured output, one of: ``response_format`` (``json_schema`` in the bounded subset, or
``json_object``); vLLM's ``structured_outputs`` (``regex`` or ``json``); or this server's own
``answer_grammar``: a task's answer grammar as `llmscisci_cfg.task.grammar.Constraint.to_wire`
writes it, rebuilt here with this model's tokenizer exactly as a local run builds it (so
``predict`` through this server answers byte-for-byte as it does locally). ``logprobs`` and
``top_logprobs`` (0 … `MAX_TOP_LOGPROBS`) return token log-probabilities as OpenAI does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Temperatures in (0, MIN_TEMPERATURE) are greedy.
MIN_TEMPERATURE = 1e-3
#: ``torch.manual_seed`` takes -2**63 … 2**64 - 1.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
#: Samples per request.
MAX_N = 16
#: Stop strings per request (OpenAI's limit) and characters per stop string.
MAX_STOP, MAX_STOP_CHARS = 4, 512
#: Messages per request (their text is bounded by the body size and the context).
MAX_MESSAGES = 4096
#: A token budget no context reaches; the prompt's context bounds it further.
MAX_TOKENS = 2**31 - 1
#: Alternatives per position with ``top_logprobs`` (OpenAI's limit).
MAX_TOP_LOGPROBS = 20
#: Characters of a ``structured_outputs.regex``.
MAX_PATTERN_CHARS = 200_000

StopString = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
TokenBudget = Annotated[int, Field(ge=1, le=MAX_TOKENS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(
        extra="allow", strict=True
    )  # name, tool_call_id …: accepted, not used
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: the text ones, joined
            return "".join(p.text for p in self.content)
        return self.content or ""


class JsonSchema(_Strict):
    name: str = "answer"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_schema", "json_object"]
    json_schema: JsonSchema | None = None


class StructuredOutputs(_Strict):
    """vLLM's ``structured_outputs``: one of a regular expression or a JSON schema."""

    regex: Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_CHARS)] | None = None
    json_: dict[str, Any] | None = Field(None, alias="json")


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    """The request fields this server understands; any other is a 400."""

    model: str | None = None
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: TokenBudget | None = None
    max_completion_tokens: TokenBudget | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    answer_grammar: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    user: str | None = None

    @property
    def decode_temperature(self) -> float:
        """The temperature decoded with: 0 (greedy) below `MIN_TEMPERATURE`."""
        return 0.0 if self.temperature < MIN_TEMPERATURE else self.temperature

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def parse_request(raw: bytes) -> ChatRequest:
    """The request in ``raw`` (the body's bytes), or an `APIError` 400 naming the first problem."""
    try:
        return ChatRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise _error(exc) from None


def _error(exc: ValidationError) -> APIError:
    errors = exc.errors(include_url=False)
    # of a union's branches, the one the value came closest to: the deepest error, and one
    # about the value (too long) before one about its type (not a string)
    err = max(errors, key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))
    kind = err["type"]
    if kind == "json_invalid":
        reason = err.get("ctx", {}).get("error", err["msg"])
        if "hex escape" in reason or "unicode code point" in reason:
            reason += " (a lone UTF-16 surrogate such as \\ud800 is not text)"
        return APIError(400, f"the request body is not valid JSON: {reason}")
    param = ".".join(str(p) for p in err["loc"] if not _union_branch(p))
    if kind == "model_type" and not param:
        return APIError(400, "the request body must be a JSON object")
    if kind == "extra_forbidden":
        return APIError(400, f"unrecognized request argument: {param}", param)
    message = f"{param}: {err['msg']}" if param else err["msg"]
    value = err.get("input")
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 60):
        message += f" (got {value!r})"
    return APIError(400, message, param or None)


def _union_branch(part: Any) -> bool:
    """Whether a pydantic error location part names a union member (``str``,
    ``list[TextPart]``, ``constrained-str``) rather than a key or an index."""
    return isinstance(part, str) and (
        "[" in part or part in ("str", "int", "float", "bool", "none", "constrained-str")
    )
