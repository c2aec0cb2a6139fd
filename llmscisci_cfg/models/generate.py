"""The one generation engine: eval, predict and serve generate through it.

A caller builds `Request`\\s (chat messages, `Sampling`, optionally a structured-output
`Constraint`) and gets `Completion`\\s back, in order, from an `Engine`:

- `TransformersEngine` (default): a local model. Requests are rendered with the tokenizer's chat
  template, sorted longest first (an out-of-memory error shows in the first batch, and rows of
  similar length share a batch: less padding), generated ``batch_size`` at a time with left
  padding and a KV cache that is really used (eval mode, no gradient checkpointing, no
  gradients). On CUDA with ``compile`` a static cache lets transformers compile the decode step
  (CUDA graphs), and batches are padded to a fixed size so the graph is reused; ``auto`` does
  so once a call has enough decode steps to pay for compiling (`worth_compiling`); on CPU (and
  with ``compile: off``) the dynamic cache is used. Why: a decode step of a 1B model at batch 16
  is bounded by reading ~2 GB of weights (~0.5 ms on an H200), but eager PyTorch spends tens of
  ms per step on Python and kernel launches (88 ms measured, ../shared/bench); only a captured
  graph removes that per-step overhead. Structured output masks logits with llguidance
  (`llmscisci_cfg.models.structured`); tokens can be streamed per row (`on_token`); a batch
  stops decoding once every row has reached one of its stop strings (`StopStrings`) or
  belongs to a request nobody waits for any more (`Abandoned`: a server's client has gone).
- `llmscisci_cfg.models.remote.OpenAIEngine`: any OpenAI-compatible server.
- `llmscisci_cfg.models.vllm_engine.VLLMEngine`: vLLM in-process, where installed.

Every engine keeps `GenerationStats` (rows, tokens in and out, seconds, tokens/s).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from llmscisci_cfg import console
from llmscisci_cfg.models.tiny import END_OF_TURN

Messages = list[dict[str, Any]]
#: The static cache grows in steps of this many positions (one compiled graph per size).
CACHE_STEP = 512
#: ``on_token(request_index, sample_index, text_so_far)`` while generating (streaming).
TokenCallback = Callable[[int, int, str], None]
#: ``cancelled(request_index)``: True once nobody waits for that request's completions.
CancelCheck = Callable[[int], bool]


@dataclass(frozen=True)
class Sampling:
    """How to decode. ``temperature`` 0 is greedy; ``n`` samples per request.

    ``top_k``, ``min_p``, ``repetition_penalty``: None leaves the model's generation_config
    default (e.g. Qwen2.5's top_k 20); a trainer passes its own values (GRPO: TRL's), so
    rollouts sample exactly what the loss assumes.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    logprobs: bool = False  # record each generated token's log-probability
    top_logprobs: int = 0  # and this many most likely alternatives per position

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
class TokenLogprob:
    """One generated token: its text, log-probability, and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()
    data: bytes | None = None  # the token's bytes, when a server gave them

    @property
    def bytes(self) -> bytes:
        return self.data if self.data is not None else self.token.encode("utf-8")


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (stop token or string), "length", "cancelled" (nobody waits)
    logprobs: tuple[TokenLogprob, ...] | None = None  # when the sampling asked for them


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
    ``manage_model``: put the model in eval mode without gradient checkpointing for good (eval,
    predict, serve); a trainer passes False and switches them around each call itself.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 16,
        compile: str = "auto",
        description: str = "transformers",
        manage_model: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.stops = stop_ids(model, tokenizer)
        quantizer = getattr(model, "hf_quantizer", None)
        compileable = quantizer is None or quantizer.is_compileable  # bitsandbytes 4-bit is not
        self.may_compile = compile == "auto" and self.device.type == "cuda" and compileable
        self.compiled = compile == "on"  # auto decides per call, by the work (`worth_compiling`)
        self.stats = GenerationStats(description)
        self.max_cache_len = 0  # the static cache's ceiling so far (compiled only)
        if manage_model:
            model.eval()
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
        cancelled: CancelCheck | None = None,
    ) -> list[list[Completion]]:
        """Completions of ``requests``, in input order (``n`` per request).

        ``cancelled(i)`` turning True stops request ``i``'s rows at the next decode step
        (`Abandoned`) and skips it if its batch has not started; what it gets back is then
        cut short (or empty) and meant for nobody.
        """
        from tqdm.auto import tqdm

        texts = [self.render(r) for r in requests]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        out: list[list[Completion]] = [[] for _ in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):  # one batch shares its decoding settings
            groups.setdefault((_batch_key(r.sampling), r.constraint is None), []).append(i)
        if self.may_compile and not self.compiled:
            steps = sum(
                -(-len(m) // self.batch_size) * requests[m[0]].sampling.max_new_tokens
                for m in groups.values()
            )
            self.compiled = worth_compiling(steps)
        started = time.perf_counter()
        # a bar on a terminal; in a log only with --verbose (a bar there is a line per update)
        shown = console.library_output() or (console.progress() and sys.stderr.isatty())
        quiet = desc is None or not shown
        with tqdm(total=len(requests), desc=desc, unit="row", disable=quiet) as bar:
            for members in groups.values():
                order = sorted(members, key=lambda i: -len(ids[i]))
                for start in range(0, len(order), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    if cancelled is not None:  # nobody waits for these: no batch for them
                        batch = [i for i in batch if not cancelled(i)]
                        if not batch:
                            continue
                    done = self._batch(batch, requests, ids, on_token, cancelled)
                    for i, completions in zip(batch, done, strict=True):
                        out[i] = completions
                    bar.update(len(batch))
                    generated = sum(c.completion_tokens for row in out for c in row)
                    seconds = time.perf_counter() - started
                    bar.set_postfix_str(f"{generated / max(seconds, 1e-9):.0f} tok/s")
        self.stats.add([c for row in out for c in row], time.perf_counter() - started)
        return out

    def generate_ids(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[list[int]]:
        """Token-level generation for a trainer (GRPO rollouts): one completion per prompt, in
        order, each up to and including its first stop token. The caller owns the model's mode
        (train/eval) and gradient checkpointing; this only decodes, in ``batch_size`` chunks."""
        import torch

        rows = [list(p) for p in prompts]
        out: list[list[int]] = []
        started = time.perf_counter()
        with torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                for new in self._decode(chunk, sampling, [None] * len(chunk), None):
                    tokens, stopped = until_stop(new, self.stops)
                    out.append(tokens + [new[len(tokens)]] if stopped else tokens)
        seconds = time.perf_counter() - started
        self.stats.add(
            [Completion("", len(p), len(c), "") for p, c in zip(rows, out, strict=True)], seconds
        )
        return out

    def _batch(
        self,
        batch: list[int],
        requests: Sequence[Request],
        ids: list[list[int]],
        on_token: TokenCallback | None,
        cancelled: CancelCheck | None = None,
    ) -> list[list[Completion]]:
        sampling = requests[batch[0]].sampling
        # greedy samples are one answer n times (and transformers refuses n > 1 without sampling)
        copies = sampling.n if sampling.greedy else 1
        decoded = replace(sampling, n=1) if copies > 1 else sampling
        if on_token is not None and copies > 1:
            on_token = _copied(on_token, copies)
        streamer = _RowStreamer(self, batch, decoded.n, on_token) if on_token else None
        constraints = [requests[i].constraint for i in batch]
        gone = Abandoned(batch, decoded.n, cancelled) if cancelled is not None else None
        recorder = LogprobRecorder(sampling.top_logprobs) if sampling.logprobs else None
        with _inference_mode():
            new = self._decode(
                [ids[i] for i in batch], decoded, constraints, streamer, gone, recorder
            )
        new = [row for row in new for _ in range(copies)]
        out = []
        for k, i in enumerate(batch):
            samples = []
            for j in range(sampling.n):
                index = k * sampling.n + j
                row = new[index]
                if gone is not None and k in gone.ended:  # what it decoded before it was padded
                    row = until_stop(row, [self.tokenizer.pad_token_id])[0]
                tokens, stopped = until_stop(row, self.stops)
                text = self.tokenizer.decode(tokens, skip_special_tokens=False)
                text, cut = cut_at_strings(text, sampling.stop)
                reason = "stop" if stopped or cut else "length"
                if gone is not None and k in gone.ended:
                    reason = "cancelled"
                used = len(tokens)
                if cut:  # the answer ends at the stop string: count its tokens, not those past it
                    used = min(used, len(self.tokenizer.encode(text, add_special_tokens=False)))
                logprobs = None
                if recorder is not None:
                    logprobs = recorder.completion(self.tokenizer, index // copies, tokens[:used])
                samples.append(Completion(text, len(ids[i]), used, reason, logprobs))
            out.append(samples)
        return out

    def _decode(
        self,
        rows: list[list[int]],
        sampling: Sampling,
        constraints: list[Any],
        streamer: Any,
        gone: Abandoned | None = None,
        recorder: LogprobRecorder | None = None,
    ) -> list[list[int]]:
        """New token ids of ``len(rows) × sampling.n`` sequences (row-major), stops included.

        Compiled: rows padded to ``batch_size`` and prompts to a multiple of 64 (a fixed shape
        reuses the captured graph), and the static cache sized to a sticky ceiling
        (``max_cache_len``) so a longer batch later does not reallocate it and recompile.
        """
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        pad = self.batch_size - len(rows) if self.compiled else 0
        enc = self.tokenizer.pad(
            {"input_ids": rows + [rows[-1]] * pad},
            padding=True,
            padding_side="left",  # decoder-only generation continues the last column
            pad_to_multiple_of=64 if self.compiled else None,
            return_tensors="pt",
        ).to(self.device)
        width = enc["input_ids"].shape[1]
        if self.compiled:
            needed = -(-(width + sampling.max_new_tokens) // CACHE_STEP) * CACHE_STEP
            self.max_cache_len = max(self.max_cache_len, needed)
        config = GenerationConfig(
            do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None,
            top_k=sampling.top_k if not sampling.greedy else None,
            min_p=sampling.min_p if not sampling.greedy else None,
            repetition_penalty=sampling.repetition_penalty,
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=sampling.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.stops,
            use_cache=True,
            cache_implementation="static" if self.compiled else None,
            max_cache_len=self.max_cache_len if self.compiled else None,
        )
        kwargs: dict[str, Any] = {}
        stopping = StoppingCriteriaList([gone] if gone is not None else [])
        if sampling.stop:
            criteria = StopStrings(self.tokenizer, sampling.stop, prompt_width=width)
            stopping.append(criteria)
            if streamer is not None:
                streamer.stopped = criteria.ended  # generate pads them from the next step
        if stopping:
            kwargs["stopping_criteria"] = stopping
        processors = [recorder.processor()] if recorder is not None else []
        if any(c is not None for c in constraints):
            from llmscisci_cfg.models.structured import processor_for

            per_row = constraints + [constraints[-1]] * pad
            processors.append(
                processor_for(
                    self.tokenizer,
                    per_row,
                    max_new_tokens=sampling.max_new_tokens,
                    stop_ids=self.stops,
                )
            )
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        if streamer is not None:
            kwargs["streamer"] = streamer
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        new = self.model.generate(**enc, generation_config=config, **kwargs)
        out = new[: len(rows) * sampling.n, width:].tolist()
        if recorder is not None:
            recorder.finish(out)
        return out


class StopStrings:
    """A transformers stopping criterion: a row ends once its generated text contains one of
    ``stop`` (OpenAI's ``stop``), so a batch whose rows have all answered stops decoding instead
    of running to ``max_new_tokens``. Ended rows are padded; the caller cuts the text at the
    string (`cut_at_strings`).

    Unlike transformers' ``stop_strings``, which match the end of prompt + completion (a prompt
    ending in "\\n" and a first "\\n" would stop at "\\n\\n"), only generated tokens count.
    Every ``every`` steps it decodes the last tokens of each row: enough for the longest string
    to have arrived since the previous check (4 tokens per character: byte-fallback pieces of
    UTF-8), so a row may run up to ``every - 1`` tokens past its stop string.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_width: int, every: int = 4):
        self.tokenizer, self.width, self.every = tokenizer, prompt_width, every
        self.stop = [s for s in stop if s]
        self.window = 4 * max((len(s) for s in self.stop), default=0) + every
        self.steps = 0
        self.ended: set[int] = set()  # rows it has ended (a streamer skips their padding)
        self._none: Any = None  # the all-False answer of the steps between checks

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.steps += 1
        if not self.stop or self.steps % self.every:
            if self._none is None:
                self._none = torch.zeros(
                    input_ids.shape[0], dtype=torch.bool, device=input_ids.device
                )
            return self._none
        start = max(self.width, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, start:].tolist())
        hits = [any(s in tail for s in self.stop) for tail in tails]
        self.ended.update(row for row, hit in enumerate(hits) if hit)
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)


def _copied(on_token: TokenCallback, copies: int) -> TokenCallback:
    """``on_token`` for one decoded sample that stands for ``copies`` identical ones."""

    def each(request: int, sample: int, text: str) -> None:
        for copy in range(copies):
            on_token(request, copy, text)

    return each


class Abandoned:
    """A transformers stopping criterion: ends the rows of the requests nobody waits for any
    more (``cancelled(request_index)``, e.g. a server's client that disconnected), so their
    decoding stops at the next step and a batch whose requests have all gone stops at once.
    Ended rows are padded, as with `StopStrings`.

    ``batch`` holds the request index of each of the batch's rows, ``n`` samples each; rows
    past them (a compiled batch's padding) copy the last row and end with it. The answer is
    rebuilt only when the set of abandoned requests changes.
    """

    def __init__(self, batch: list[int], n: int, cancelled: CancelCheck):
        self.batch, self.n, self.cancelled = batch, n, cancelled
        self.ended: frozenset[int] = frozenset()
        self._answer: Any = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        ended = frozenset(k for k, i in enumerate(self.batch) if self.cancelled(i))
        if self._answer is None or ended != self.ended:
            self.ended = ended
            last = len(self.batch) - 1
            rows = [min(r // self.n, last) in ended for r in range(input_ids.shape[0])]
            self._answer = torch.tensor(rows, dtype=torch.bool, device=input_ids.device)
        return self._answer


class LogprobRecorder:
    """Log-probabilities of the generated tokens, recorded during ``generate``.

    A logits processor placed before any other of ours (before the grammar's mask): at each
    step it keeps the log-softmax of the scores it receives (the model's distribution at the
    sampling temperature; greedy: the model's own) and, at the next step, reads the
    probability of the token that was chosen. Only one step's distribution is held at a time
    (no full-vocabulary logits per step in memory).
    """

    def __init__(self, top: int = 0):
        self.top = top
        self.chosen: list[list[float]] = []  # per step: each row's chosen token's logprob
        self.alternatives: list[Any] = []  # per step: (values, indices) of the top tokens
        self._last = None
        self._start: int | None = None

    def processor(self) -> Any:
        from transformers import LogitsProcessor

        recorder = self

        class _Record(LogitsProcessor):
            def __call__(self, input_ids, scores):
                recorder._step(input_ids, scores)
                return scores

        return _Record()

    def _step(self, input_ids: Any, scores: Any) -> None:
        import torch

        if self._start is None:
            self._start = input_ids.shape[1]
        elif self._last is not None:
            self._take(input_ids[:, -1])
        logp = torch.log_softmax(scores.float(), dim=-1)
        self._last = logp
        if self.top:
            values, indices = logp.topk(min(self.top, logp.shape[-1]), dim=-1)
            self.alternatives.append((values.tolist(), indices.tolist()))

    def _take(self, tokens: Any) -> None:
        picked = self._last.gather(-1, tokens.view(-1, 1).to(self._last.device)).view(-1)
        self.chosen.append(picked.tolist())

    def finish(self, new: list[list[int]]) -> None:
        """Read the last step's choice from the returned ids (generate calls no processor after
        its last token)."""
        import torch

        step = len(self.chosen)
        if self._last is not None and step < max((len(r) for r in new), default=0):
            last = torch.tensor([r[step] if step < len(r) else 0 for r in new])
            rows = self._last.shape[0]
            self._take(torch.cat([last, last.new_zeros(max(rows - len(new), 0))])[:rows])
        self._last = None

    def completion(self, tokenizer: Any, row: int, tokens: list[int]) -> tuple[TokenLogprob, ...]:
        """The `TokenLogprob` of each of ``tokens`` (row ``row``'s completion, cut at its stop)."""
        pieces = token_pieces(tokenizer, tokens)
        out = []
        for step, piece in enumerate(pieces):
            top: tuple[tuple[str, float], ...] = ()
            if self.top and step < len(self.alternatives):
                values, indices = self.alternatives[step]
                top = tuple(
                    (tokenizer.decode([t], skip_special_tokens=False), float(v))
                    for v, t in zip(values[row], indices[row], strict=True)
                )
            logprob = self.chosen[step][row] if step < len(self.chosen) else float("nan")
            out.append(TokenLogprob(piece, float(logprob), top))
        return tuple(out)


def token_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """The text each token adds to the decoded completion (joined, they are the completion):
    decoded cumulatively, so a token that ends inside a UTF-8 character adds nothing and the
    next one adds the whole character."""
    pieces, before = [], ""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[: k + 1], skip_special_tokens=False)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the rest
            pieces.append("")
            continue
        pieces.append(text[len(before) :] if text.startswith(before) else text)
        before = text
    return pieces


def _inference_mode():
    import torch

    return torch.inference_mode()


#: Decode steps (batches × new tokens) from which compiling pays: on an H200 (gemma-3-1b
#: shape, 16 rows) compiling took 88 s and saved 40 ms per step (44.9 → 5.0 ms), so it pays
#: after ~2,200 steps; bench/RESULTS.md.
COMPILE_MIN_STEPS = 2_000


def worth_compiling(decode_steps: int) -> bool:
    """Whether ``compile: auto`` compiles for a call of ``decode_steps`` decode steps: once
    compiled, an engine stays compiled (a server, a long predict), so a small eval does not pay
    a minute and a half of compiling for a few seconds of decoding."""
    return decode_steps >= COMPILE_MIN_STEPS


def _batch_key(s: Sampling) -> tuple:
    """Requests that may share a batch (a seeded request gets its own: the seed is per call)."""
    return (
        s.max_new_tokens, s.temperature, s.top_p, s.n, s.seed, s.stop, s.top_k, s.min_p,
        s.repetition_penalty,
    )  # fmt: skip


class _RowStreamer:
    """A transformers streamer for a whole batch: decodes each row as tokens arrive and calls
    ``on_token(request_index, sample_index, text_so_far)`` (transformers' own streamers take
    one row only)."""

    def __init__(self, engine: TransformersEngine, batch: list[int], n: int, on_token):
        self.engine, self.batch, self.n, self.on_token = engine, batch, n, on_token
        self.tokens: list[list[int]] = []
        self.finished: set[int] = set()  # rows that emitted a stop token
        self.stopped: set[int] = set()  # rows a stop string ended (`StopStrings.ended`)
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # the first call carries the prompts
            self.prompt_seen = True
            return
        step = value.reshape(-1).tolist()
        if not self.tokens:
            self.tokens = [[] for _ in step]
        for row, token in enumerate(step[: len(self.batch) * self.n]):
            if row in self.finished or row in self.stopped:
                continue
            if token in self.engine.stops:
                self.finished.add(row)
                continue
            self.tokens[row].append(token)
            text = self.engine.tokenizer.decode(self.tokens[row], skip_special_tokens=False)
            self.on_token(self.batch[row // self.n], row % self.n, text)

    def end(self) -> None:
        pass
