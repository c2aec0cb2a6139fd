"""Structured (constrained) decoding for local transformers models, with llguidance.

`processor_for` turns the task's answer constraints (`llmscisci_cfg.task.grammar.Constraint`)
into a transformers ``LogitsProcessor`` that masks every token the grammar forbids, one
llguidance matcher per batch row, so each answer is complete and valid whatever the model
prefers.

>>> from transformers import LogitsProcessorList                      # doctest: +SKIP
>>> from llmscisci_cfg.models.generate import stop_ids                # doctest: +SKIP
>>> stops = stop_ids(model, tokenizer)                                # doctest: +SKIP
>>> proc = processor_for(tokenizer, Constraint.think_label(5), max_new_tokens=48,
...                      stop_ids=stops)                             # doctest: +SKIP
>>> out = model.generate(**enc, max_new_tokens=48, eos_token_id=stops,
...                      logits_processor=LogitsProcessorList([proc]))  # doctest: +SKIP

The processor is single-use (one per ``generate`` call), for greedy or sampled decoding, not
beam search. It needs no prompt lengths: each step it feeds every row's matcher the token just
generated (the last column), so padding (left, as decoder-only generation wants) is invisible
to it; a row that has emitted a stop token, or that generate has ended otherwise (a stop
string: its next token is the pad token, which its grammar then refuses), is left alone.
Imports no torch or transformers at import time; llguidance is light (it imports neither).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import llguidance

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.task.grammar import Constraint

# --------------------------------------------------------------------------- the processor


@functools.lru_cache(maxsize=8)
def _ll_tokenizer(tokenizer: Any, stops: tuple[int, ...]) -> llguidance.LLTokenizer:
    """llguidance's view of ``tokenizer`` with ``stops`` as its end tokens (cached: ~1 s on
    a large vocabulary)."""
    import llguidance.hf

    try:
        return llguidance.hf.from_tokenizer(tokenizer, eos_token=list(stops))
    except ValueError as exc:  # a slow (Python) tokenizer
        raise UserError(f"structured output needs a fast tokenizer: {exc}") from exc


@functools.cache
def _executor() -> llguidance.LLExecutor:
    """One thread pool computing the batch's masks in parallel."""
    return llguidance.LLExecutor()


class _GrammarMasker:
    """The processor's logic; `processor_for` returns it mixed with transformers' LogitsProcessor."""

    def __init__(
        self,
        ll_tokenizer,
        templates: list[llguidance.LLMatcher],
        stops: tuple[int, ...],
        pad: int | None = None,
    ):
        self.ll = ll_tokenizer
        self.stops = set(stops)
        self.pad = pad  # what generate appends to a row a stopping criterion ended
        self.templates = templates  # one fresh matcher per constraint, copied for each row
        self.matchers: list[llguidance.LLMatcher] = []
        self.done: list[bool] = []
        self.start: int | None = None
        self.steps = 0
        self.bitmask = None
        self.shifts = None

    def _begin(self, input_ids) -> None:
        import torch

        rows, prompts = input_ids.shape[0], len(self.templates)
        if rows % prompts:
            raise ValueError(f"batch of {rows} rows for {prompts} constraints")
        per = rows // prompts  # num_return_sequences: a prompt's rows are consecutive
        self.matchers = [self.templates[r // per].deep_copy() for r in range(rows)]
        self.done = [False] * rows
        self.start = input_ids.shape[1]
        words = (self.ll.vocab_size + 31) // 32
        self.bitmask = torch.full((rows, words), -1, dtype=torch.int32)
        self.shifts = torch.arange(32, dtype=torch.int32, device=input_ids.device)

    def _consume(self, input_ids) -> None:
        if input_ids.shape[1] != self.start + self.steps:
            raise RuntimeError(
                "structured output: a processor serves one generate call (greedy or sampling)"
            )
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if self.done[row]:
                continue
            matcher = self.matchers[row]
            if token in self.stops:
                self.done[row] = True
            elif token == self.pad and not matcher.validate_tokens([token]):
                self.done[row] = True  # a stop string ended the row: generate pads it
            elif not matcher.consume_token(token):
                raise RuntimeError(
                    f"structured output: row {row} left its grammar: {matcher.get_error()}"
                )

    def __call__(self, input_ids, scores):
        import torch

        if self.start is None:
            self._begin(input_ids)
        else:
            self._consume(input_ids)
        self.steps += 1
        live = [(m, r) for r, m in enumerate(self.matchers) if not self.done[r]]
        self.bitmask.fill_(-1)  # finished rows: every token allowed (generate pads them)
        if live:
            row_bytes = self.bitmask.shape[1] * 4
            _executor().unsafe_compute_mask_ptr(
                live, self.bitmask.data_ptr(), row_bytes, self.bitmask.shape[0]
            )
        mask = self.bitmask.to(scores.device)
        bits = ((mask.unsqueeze(-1) >> self.shifts) & 1).reshape(mask.shape[0], -1).bool()
        vocab = scores.shape[-1]
        if bits.shape[1] < vocab:  # model vocabulary padded past the tokenizer's
            bits = torch.nn.functional.pad(bits, (0, vocab - bits.shape[1]), value=False)
        allowed = bits[:, :vocab]
        out = scores.masked_fill(~allowed, float("-inf"))
        # an earlier processor may have banned every allowed token: sample among them evenly
        dead = torch.isneginf(out).all(dim=-1, keepdim=True)
        return torch.where(dead & allowed, torch.zeros_like(out), out)


def compile_check(tokenizer: Any, constraint: Constraint, max_new_tokens: int) -> None:
    """A `UserError` when ``constraint`` cannot become a grammar for ``tokenizer`` within
    ``max_new_tokens`` (a bound that cannot fit, a schema or pattern llguidance refuses)."""
    stops = tuple(t for t in (tokenizer.eos_token_id,) if t is not None)
    if constraint.kind == "regex":
        _refuse_added_tokens(tokenizer, constraint.pattern)
    try:
        grammar = constraint.grammar(tokenizer, max_new_tokens)
        matcher = llguidance.LLMatcher(_ll_tokenizer(tokenizer, stops), grammar)
    except ValueError as exc:  # e.g. integer bounds past int64
        raise UserError(f"cannot compile: {exc}") from None
    if matcher.is_error():
        raise UserError(f"{constraint.kind}: {matcher.get_error()}")


def _refuse_added_tokens(tokenizer: Any, pattern: str) -> None:
    """A regular expression that spells out one of the tokenizer's added tokens (``<think>``
    where it is one token) cannot be decoded: llguidance lets the model write that text only
    as the added token, which a regex never matches. Said before generating, with the way
    out (the task's own grammar references such tokens by id)."""
    from llmscisci_cfg.task.kinds import rx

    found = [text for text in tokenizer.get_added_vocab() if len(text) > 1 and rx(text) in pattern]
    if found:
        raise UserError(
            f"this regex spells {found[0]!r}, which this model's tokenizer writes as one added "
            "token that a regex cannot match; send the task's answer grammar instead "
            "(answer_grammar; `predict` does with generation.server_grammar: llmscisci)"
        )


@functools.cache
def _processor_class() -> type:
    from transformers import LogitsProcessor

    return type("GrammarLogitsProcessor", (_GrammarMasker, LogitsProcessor), {})


def processor_for(
    tokenizer: Any,
    constraints: Constraint | Sequence[Constraint],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int] | None = None,
) -> Any:
    """A transformers ``LogitsProcessor`` that keeps each row of one ``generate`` call valid.

    ``constraints``: one for every row, or one per prompt (rows ``k·i … k·i+k-1`` of
    ``num_return_sequences=k`` share prompt ``i``'s). ``max_new_tokens`` must be the value
    given to ``generate``: free text is bounded so each answer fits it. ``stop_ids`` (default:
    the tokenizer's EOS) end a row once its grammar is complete; pass the same ids as
    ``eos_token_id`` to ``generate`` (`llmscisci_cfg.models.generate.stop_ids`). Grammar
    problems are `UserError` here, before any token is generated.
    """
    listed = [constraints] if isinstance(constraints, Constraint) else list(constraints)
    if not listed:
        raise ValueError("processor_for needs at least one constraint")
    stops = tuple(stop_ids) if stop_ids is not None else (tokenizer.eos_token_id,)
    stops = tuple(t for t in dict.fromkeys(stops) if t is not None)
    if not stops:
        raise UserError("structured output needs an end-of-sequence token id (stop_ids)")
    ll = _ll_tokenizer(tokenizer, stops)
    compiled = {}
    for constraint in dict.fromkeys(listed):
        matcher = llguidance.LLMatcher(ll, constraint.grammar(tokenizer, max_new_tokens))
        if matcher.is_error():  # llguidance reports grammar problems here, never raises
            raise UserError(f"structured output: {constraint.kind}: {matcher.get_error()}")
        compiled[constraint] = matcher
    return _processor_class()(ll, [compiled[c] for c in listed], stops, tokenizer.pad_token_id)
