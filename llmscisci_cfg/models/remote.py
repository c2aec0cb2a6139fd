"""The ``openai`` backend of the engine: any OpenAI-compatible server (vLLM ``vllm serve``, SGLang,
Ollama, llama.cpp, hosted APIs, or ``llmscisci serve``) through the official ``openai`` client.

Requests run ``max_concurrency`` at a time; the client retries timeouts, 429 and 5xx with
backoff (``max_retries``). The API key is read from the environment variable the recipe names
(``api_key_env``) and is never written anywhere.

**One answer grammar, the strongest form the server takes** (``generation.server_grammar``):

- ``llmscisci``: the task's grammar itself, as the ``answer_grammar`` request field
  (`Constraint.to_wire`); `llmscisci serve` rebuilds exactly the grammar a local run decodes
  with, so the same model, rows and greedy settings give byte-for-byte the same completions.
- ``regex``: vLLM's ``structured_outputs: {regex: …}`` (vLLM ≥ 0.10): the same labels, the task's
  label constraints included; the reasoning is not bounded (the server's ``max_tokens`` is).
- ``json_schema``: ``response_format`` with the answer as JSON ``{"think": …, "label": …}``
  (`Constraint.json_form`): the label's schema admits exactly the labels the grammar does
  (an enumeration of the allowed one-hot lists, the category names, the dimensions' levels);
  no length cap on the reasoning that the local grammar does not have.
- ``none``: free text. ``auto`` asks the server's ``/v1/models`` once (llmscisci serve →
  ``llmscisci``, vLLM → ``regex``, anything else → ``json_schema``).

A completion's text is exactly what the server returned (``<aspect>_raw``); the task's readers
parse both the tag form and the JSON form (`llmscisci_cfg.task.kinds.read_answer`).
Log-probabilities are asked for when the sampling wants them and kept when the server returns
them. An unreachable server, a refused key, an unknown model, or an answer that is not a chat
completion (not JSON, an HTML page, no choices) is a `UserError` naming the URL.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from llmscisci_cfg.errors import UserError, first_line
from llmscisci_cfg.models.generate import (
    Completion,
    GenerationStats,
    Request,
    TokenCallback,
    TokenLogprob,
)

NO_KEY = "EMPTY"  # what local servers (vLLM, llama.cpp) accept when they check no key
FORMS = ("llmscisci", "regex", "json_schema", "none")


def api_key(env: str | None) -> str:
    """The key from the environment variable named ``env`` (never logged), or `NO_KEY`."""
    if env is None:
        return NO_KEY
    value = os.environ.get(env)
    if not value:
        raise UserError(
            f"generation.api_key_env: the environment variable {env} is not set (or empty); "
            f"export {env}=… or leave api_key_env out for a server that needs no key"
        )
    return value


def detect_form(base_url: str, key: str, timeout: float = 10.0) -> str:
    """``auto``: which grammar form the server at ``base_url`` takes, from its ``/v1/models``
    (``owned_by``): llmscisci serve → llmscisci, vLLM → regex, else (or no answer) json_schema."""
    request = urllib.request.Request(
        base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data = json.loads(response.read(1_000_000))
        owners = {str(m.get("owned_by", "")).lower() for m in data.get("data", [])}
    except Exception:  # unreachable, not JSON, not a list: the first request will say why
        return "json_schema"
    if "llmscisci" in owners:
        return "llmscisci"
    if "vllm" in owners:
        return "regex"
    return "json_schema"


def request_fields(constraint: Any, form: str) -> dict[str, Any]:
    """The request fields that carry ``constraint`` in ``form`` (see the module doc)."""
    if constraint is None or form == "none":
        return {}
    if form == "llmscisci":
        return {"extra_body": {"answer_grammar": constraint.to_wire()}}
    if form == "regex" and constraint.kind == "answer":
        return {"extra_body": {"structured_outputs": {"regex": constraint.regex()}}}
    schema = constraint.json_form()
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        }
    }


class OpenAIEngine:
    """Generate through an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 3,
        grammar: str = "auto",
    ):
        from openai import OpenAI

        self.base_url, self.model = base_url, model
        self.max_concurrency = max_concurrency
        key = api_key(api_key_env)
        self.client = OpenAI(
            base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries
        )
        self.form = detect_form(base_url, key, min(timeout, 10.0)) if grammar == "auto" else grammar
        self.stats = GenerationStats(f"openai {model} at {base_url}")

    def generate(
        self,
        requests: Sequence[Request],
        *,
        desc: str | None = None,
        on_token: TokenCallback | None = None,
    ) -> list[list[Completion]]:
        """Completions of ``requests`` in input order; the first failure stops the rest."""
        from tqdm.auto import tqdm

        started = time.perf_counter()
        out: list[list[Completion]] = [[] for _ in requests]
        with (
            ThreadPoolExecutor(self.max_concurrency) as pool,
            tqdm(total=len(requests), desc=desc, unit="row", disable=desc is None) as bar,
        ):
            futures = {pool.submit(self._one, r): i for i, r in enumerate(requests)}
            try:
                for future in as_completed(futures):
                    out[futures[future]] = future.result()
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        self.stats.add([c for row in out for c in row], time.perf_counter() - started)
        return out

    def _one(self, request: Request) -> list[Completion]:
        s = request.sampling
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages or [{"role": "user", "content": request.prompt or ""}],
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "n": s.n,
        }
        if s.seed is not None:
            kwargs["seed"] = s.seed
        if s.stop:
            kwargs["stop"] = list(s.stop)
        if s.logprobs:
            kwargs["logprobs"] = True
            if s.top_logprobs:
                kwargs["top_logprobs"] = s.top_logprobs
        kwargs |= request_fields(request.constraint, self.form)
        response = self._create(kwargs)
        return self._completions(response)

    def _create(self, kwargs: dict[str, Any]) -> Any:
        import openai

        try:
            return self.client.chat.completions.create(**kwargs)
        except openai.APIConnectionError as exc:
            raise UserError(
                f"generation.base_url: cannot reach the server at {self.base_url}: "
                f"{first_line(exc)}; is it running?"
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise UserError(
                f"generation.api_key_env: the server at {self.base_url} refused the key "
                f"({exc.status_code}): {first_line(exc)}"
            ) from None
        except openai.NotFoundError as exc:
            raise UserError(
                f"generation.model: the server at {self.base_url} has no model {self.model!r} "
                f"(or no /chat/completions): {first_line(exc)}"
            ) from None
        except openai.APIStatusError as exc:
            why = first_line(exc)
            hint = ""
            if exc.status_code == 400 and re.search(r"context|too long|maximum", why, re.I):
                hint = (
                    "; if a prompt is too long for the served model, set "
                    "method.max_prompt_tokens (predict truncates longer sections to it)"
                )
            raise UserError(
                f"the server at {self.base_url} refused the request ({exc.status_code}): "
                f"{why}{hint}"
            ) from None
        except (openai.APIResponseValidationError, ValueError, TypeError) as exc:
            raise self._not_a_completion(first_line(exc)) from None

    def _not_a_completion(self, why: str) -> UserError:
        return UserError(
            f"the server at {self.base_url} answered something that is not an OpenAI chat "
            f"completion ({why}); is generation.base_url the server's /v1 address?"
        )

    def _completions(self, response: Any) -> list[Completion]:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            shown = f" in {response[:80]!r}" if isinstance(response, str) else ""
            raise self._not_a_completion(f"no choices{shown}")
        usage = getattr(response, "usage", None)
        prompt_tokens = _count(getattr(usage, "prompt_tokens", 0))
        completion_tokens = _count(getattr(usage, "completion_tokens", 0))
        out = []
        for choice in sorted(choices, key=lambda ch: _count(getattr(ch, "index", 0))):
            message = getattr(choice, "message", None)
            text = getattr(message, "content", None)
            if message is None or not (text is None or isinstance(text, str)):
                raise self._not_a_completion("a choice without a message")
            reason = "length" if getattr(choice, "finish_reason", None) == "length" else "stop"
            share = completion_tokens // len(choices)
            logprobs = _logprobs(getattr(choice, "logprobs", None))
            out.append(Completion(text or "", prompt_tokens, share, reason, logprobs))
        return out


def _count(value: Any) -> int:
    """A token count or index as the server sent it; anything but a whole number is 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _logprobs(block: Any) -> tuple[TokenLogprob, ...] | None:
    """A choice's ``logprobs.content`` as `TokenLogprob`\\s (token text from its ``bytes``
    when given: a token may end inside a UTF-8 character), or None when the server sent none
    or sent something else (log-probabilities are an extra: the answer stays)."""
    content = getattr(block, "content", None) if block is not None else None
    if not content or not isinstance(content, list):
        return None
    try:
        return _tokens(content)
    except (TypeError, ValueError):
        return None


def _tokens(content: list[Any]) -> tuple[TokenLogprob, ...]:
    out = []
    for item in content:
        raw = getattr(item, "bytes", None)
        data = bytes(raw) if raw else None
        token = str(getattr(item, "token", "") or "")
        top = tuple(
            (str(getattr(t, "token", "")), _logprob(getattr(t, "logprob", None)))
            for t in getattr(item, "top_logprobs", None) or ()
        )
        out.append(TokenLogprob(token, _logprob(getattr(item, "logprob", None)), top, data))
    return tuple(out)


def _logprob(value: Any) -> float:
    """A log-probability: a number ≤ 0 (``-inf`` included), else `ValueError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value <= 0:
        raise ValueError(f"not a log-probability: {value!r}")
    return float(value)
