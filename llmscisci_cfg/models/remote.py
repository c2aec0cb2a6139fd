"""The ``openai`` backend of the engine: any OpenAI-compatible server (vLLM ``vllm serve``, SGLang,
Ollama, llama.cpp, hosted APIs, or ``llmscisci serve``) through the official ``openai`` client.

Requests run ``max_concurrency`` at a time; the client retries timeouts, 429 and 5xx with
backoff (``max_retries``). The API key is read from the environment variable the recipe names
(``api_key_env``) and is never written anywhere. Structured output becomes the server's
``response_format: {type: json_schema}``; the task's ``<think>…</think><label>[…]</label>``
answer is asked for as ``{"think": …, "label": […]}`` and written back in the task's format,
so every backend's completions parse the same way. An unreachable server, a refused key or an
unknown model is a `UserError` naming the URL.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from llmscisci_cfg.errors import UserError, first_line
from llmscisci_cfg.models.generate import Completion, GenerationStats, Request, TokenCallback

NO_KEY = "EMPTY"  # what local servers (vLLM, llama.cpp) accept when they check no key


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


def think_label_schema(n: int, max_new_tokens: int) -> dict[str, Any]:
    """The task's answer as a JSON schema, for servers that constrain by JSON schema; the think
    text is bounded so the whole answer fits ``max_new_tokens`` even at one token per byte
    (about 20 tokens of JSON around it, 3 per label, a character at most 4 bytes). The task's
    label constraints are not in it: readers check them after generation (`structured`)."""
    max_think_chars = max(1, (max_new_tokens - 24 - 3 * n) // 4)
    return {
        "type": "object",
        "properties": {
            "think": {"type": "string", "maxLength": max_think_chars},
            "label": {
                "type": "array",
                "items": {"type": "integer", "enum": [0, 1]},
                "minItems": n,
                "maxItems": n,
            },
        },
        "required": ["think", "label"],
        "additionalProperties": False,
    }


def think_label_text(content: str) -> str:
    """``{"think": …, "label": […]}`` written as ``<think>…</think><label>[…]</label>`` (the
    text unchanged when it is not such an object: the answer is then judged invalid)."""
    try:
        data = json.loads(content)
        think, label = str(data["think"]), data["label"]
        shown = "[" + ", ".join(str(int(v)) for v in label) + "]"
    except (ValueError, KeyError, TypeError):
        return content
    return f"<think>\n{think.strip()}\n</think>\n<label>\n{shown}\n</label>"


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
    ):
        from openai import OpenAI

        self.base_url, self.model = base_url, model
        self.max_concurrency = max_concurrency
        self.client = OpenAI(
            base_url=base_url,
            api_key=api_key(api_key_env),
            timeout=timeout,
            max_retries=max_retries,
        )
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
        import openai

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
        c = request.constraint
        if c is not None:
            schema = (
                c.schema if c.kind == "json_schema" else think_label_schema(c.n, s.max_new_tokens)
            )
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        try:
            response = self.client.chat.completions.create(**kwargs)
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
        usage = response.usage
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        out = []
        for choice in sorted(response.choices, key=lambda ch: ch.index):
            text = choice.message.content or ""
            if c is not None and c.kind == "think_label":
                text = think_label_text(text)
            reason = "length" if choice.finish_reason == "length" else "stop"
            share = completion_tokens // max(len(response.choices), 1)
            out.append(Completion(text, prompt_tokens, share, reason))
        return out
