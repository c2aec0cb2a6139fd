"""The one generation engine: eval, predict and serve generate through it.

A caller builds `Request`\\s (chat messages, `Sampling`, optionally a structured-output
`Constraint`) and gets `Completion`\\s back, in order, from an `Engine`:

- `TransformersEngine` (default): a local model. Requests are rendered with the tokenizer's chat
  template, sorted longest first (an out-of-memory error shows in the first batch, and rows of
  similar length share a batch: less padding), generated ``batch_size`` at a time with left
  padding and a KV cache that is really used (eval mode, no gradient checkpointing, no
  gradients). On CUDA with ``compile`` a static cache lets transformers compile the decode step
  (CUDA graphs), and batches are padded to a fixed size so the graph is reused; on CPU (and
  with ``compile: off``) the dynamic cache is used. Why: a decode step of a 1B model at batch 16
  is bounded by reading ~2 GB of weights (~0.5 ms on an H200), but eager PyTorch spends tens of
  ms per step on Python and kernel launches (88 ms measured, ../shared/bench); only a captured
  graph removes that per-step overhead. Structured output masks logits with llguidance
  (`llmscisci_cfg.models.structured`); tokens can be streamed per row (`on_token`).
- `llmscisci_cfg.models.remote.OpenAIEngine`: any OpenAI-compatible server.
- `llmscisci_cfg.models.vllm_engine.VLLMEngine`: vLLM in-process, where installed.

Every engine keeps `GenerationStats` (rows, tokens in and out, seconds, tokens/s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmscisci_cfg.models.tiny import END_OF_TURN

Messages = list[dict[str, Any]]
#: ``on_token(request_index, sample_index, text_so_far)`` while generating (streaming).
TokenCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Sampling:
    """How to decode. ``temperature`` 0 is greedy; ``n`` samples per request."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Request:
    """One prompt: chat ``messages`` (or an already rendered ``prompt`` text)."""

    messages: Messages | None = None
    prompt: str | None = None
    sampling: Sampling = Sampling()
    constraint: Any = None  # a `structured.Constraint`, or None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (a stop token or string) or "length"


@dataclass
class GenerationStats:
    """What an engine did: rows, tokens in and out, seconds."""

    backend: str
    rows: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def add(self, completions: Sequence[Completion], seconds: float) -> None:
        self.rows += len(completions)
        self.prompt_tokens += sum(c.prompt_tokens for c in completions)
        self.completion_tokens += sum(c.completion_tokens for c in completions)
        self.seconds += seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "rows": self.rows,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_second": round(self.tokens_per_second, 1),
        }

    def summary(self) -> str:
        return (
            f"{self.rows} completions, {self.prompt_tokens} prompt + {self.completion_tokens} "
            f"generated tokens in {self.seconds:.1f} s ({self.tokens_per_second:.0f} tokens/s, "
            f"{self.backend})"
        )


class Engine(Protocol):
    """What every backend offers."""

    stats: GenerationStats

    def generate(
        self,
        requests: Sequence[Request],
        *,
        desc: str | None = None,
        on_token: TokenCallback | None = None,
    ) -> list[list[Completion]]: ...


# ----------------------------------------------------------------------------- local models


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a completion: the model's and tokenizer's EOS and known end-of-turn tokens."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        ids += value if isinstance(value, list) else [value] if value is not None else []
    added = tokenizer.get_added_vocab()  # special tokens only, never a piece of plain text
    ids += [added[t] for t in END_OF_TURN if t in added]
    return list(dict.fromkeys(ids))


def until_stop(ids: list[int], stops: Sequence[int]) -> tuple[list[int], bool]:
    """``ids`` up to (not including) the first stop token, and whether one was found."""
    cut = next((k for k, t in enumerate(ids) if t in stops), None)
    return (ids, False) if cut is None else (ids[:cut], True)


def cut_at_strings(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first of the ``stop`` strings (OpenAI's ``stop``), and whether cut."""
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


class TransformersEngine:
    """A local transformers model (see the module docstring for how it batches and compiles).

    ``compile``: ``auto`` (static cache + compiled decode step on CUDA), ``on`` or ``off``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 16,
        compile: str = "auto",
        description: str = "transformers",
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"  # decoder-only generation continues the last column
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.stops = stop_ids(model, tokenizer)
        cuda = self.device.type == "cuda"
        self.compiled = compile == "on" or (compile == "auto" and cuda)
        self.stats = GenerationStats(description)
        if getattr(model, "is_activation_checkpointing", False):
            model.activation_checkpointing_disable()  # it turns the KV cache off

    def render(self, request: Request) -> str:
        if request.prompt is not None:
            return request.prompt
        from llmscisci_cfg.models import chat

        return chat.render(self.tokenizer, request.messages, add_generation_prompt=True)

    def generate(
        self,
        requests: Sequence[Request],
        *,
        desc: str | None = None,
        on_token: TokenCallback | None = None,
    ) -> list[list[Completion]]:
        """Completions of ``requests``, in input order (``n`` per request)."""
        from tqdm.auto import tqdm

        texts = [self.render(r) for r in requests]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        out: list[list[Completion]] = [[] for _ in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):  # one batch shares its decoding settings
            groups.setdefault((_batch_key(r.sampling), r.constraint is None), []).append(i)
        started = time.perf_counter()
        with tqdm(total=len(requests), desc=desc, unit="row", disable=desc is None) as bar:
            for members in groups.values():
                order = sorted(members, key=lambda i: -len(ids[i]))
                for start in range(0, len(order), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    done = self._batch(batch, requests, ids, on_token)
                    for i, completions in zip(batch, done, strict=True):
                        out[i] = completions
                    bar.update(len(batch))
                    generated = sum(c.completion_tokens for row in out for c in row)
                    seconds = time.perf_counter() - started
                    bar.set_postfix_str(f"{generated / max(seconds, 1e-9):.0f} tok/s")
        self.stats.add([c for row in out for c in row], time.perf_counter() - started)
        return out

    def _batch(
        self,
        batch: list[int],
        requests: Sequence[Request],
        ids: list[list[int]],
        on_token: TokenCallback | None,
    ) -> list[list[Completion]]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        sampling = requests[batch[0]].sampling
        rows = [ids[i] for i in batch]
        pad = self.batch_size - len(rows) if self.compiled else 0  # a fixed shape reuses the graph
        enc = self.tokenizer.pad(
            {"input_ids": rows + [rows[-1]] * pad},
            padding=True,
            pad_to_multiple_of=64 if self.compiled else None,  # few prompt lengths, few graphs
            return_tensors="pt",
        ).to(self.device)
        config = GenerationConfig(
            do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None,
            top_k=None,
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=sampling.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.stops,
            use_cache=True,
            cache_implementation="static" if self.compiled else None,
        )
        kwargs: dict[str, Any] = {}
        constraints = [requests[i].constraint for i in batch]
        if any(c is not None for c in constraints):
            from llmscisci_cfg.models.structured import processor_for

            per_row = constraints + [constraints[-1]] * pad
            kwargs["logits_processor"] = LogitsProcessorList(
                [
                    processor_for(
                        self.tokenizer,
                        per_row,
                        max_new_tokens=sampling.max_new_tokens,
                        stop_ids=self.stops,
                    )
                ]
            )
        if on_token is not None:
            kwargs["streamer"] = _RowStreamer(self, batch, sampling.n, on_token)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            new = self.model.generate(**enc, generation_config=config, **kwargs)
        new = new[: len(rows) * sampling.n, enc["input_ids"].shape[1] :].tolist()
        out = []
        for k, i in enumerate(batch):
            samples = []
            for j in range(sampling.n):
                tokens, stopped = until_stop(new[k * sampling.n + j], self.stops)
                text = self.tokenizer.decode(tokens, skip_special_tokens=False)
                text, cut = cut_at_strings(text, sampling.stop)
                reason = "stop" if stopped or cut else "length"
                samples.append(Completion(text, len(ids[i]), len(tokens), reason))
            out.append(samples)
        return out


def _batch_key(s: Sampling) -> tuple:
    """Requests that may share a batch (a seeded request gets its own: the seed is per call)."""
    return (s.max_new_tokens, s.temperature, s.top_p, s.n, s.seed, s.stop)


class _RowStreamer:
    """A transformers streamer for a whole batch: decodes each row as tokens arrive and calls
    ``on_token(request_index, sample_index, text_so_far)`` (transformers' own streamers take
    one row only)."""

    def __init__(self, engine: TransformersEngine, batch: list[int], n: int, on_token):
        self.engine, self.batch, self.n, self.on_token = engine, batch, n, on_token
        self.tokens: list[list[int]] = []
        self.finished: set[int] = set()
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # the first call carries the prompts
            self.prompt_seen = True
            return
        step = value.reshape(-1).tolist()
        if not self.tokens:
            self.tokens = [[] for _ in step]
        for row, token in enumerate(step[: len(self.batch) * self.n]):
            if row in self.finished:
                continue
            if token in self.engine.stops:
                self.finished.add(row)
                continue
            self.tokens[row].append(token)
            text = self.engine.tokenizer.decode(self.tokens[row], skip_special_tokens=False)
            self.on_token(self.batch[row // self.n], row % self.n, text)

    def end(self) -> None:
        pass


# ----------------------------------------------------------------------------- choosing


@dataclass(frozen=True)
class EngineSpec:
    """Which backend to build, from a recipe's ``generation`` section or the command line."""

    backend: str = "transformers"  # transformers | openai | vllm
    base_url: str | None = None
    model: str | None = None  # openai: the served model's name
    api_key_env: str | None = None
    max_concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 3
    batch_size: int = 16
    compile: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)
