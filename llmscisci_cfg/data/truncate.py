"""Fitting an over-long section into a token budget, instead of dropping it.

The text is cut, never the instructions around it: `fit` renders the prompt with an empty
section to learn what the rest costs, then keeps as many of the section's tokens as the budget
allows: its start (``head``), its end (``tail``), or both around a ``' […] '`` marker
(``head_tail``, the default: a reproducibility section's conclusion is often at its end).
Without a tokenizer (a hosted model whose tokenizer is not here) tokens are estimated as four
characters each. `predict` uses it for every section; the training data stage uses the same
mechanism when ``data.length_filter.strategy`` is ``truncate``.

>>> fit_text("a b c d e f", 4, "head_tail", lambda s: s.split(), " ".join)
('a b […] f', True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MARKER = " […] "
Strategy = str  # "head" | "tail" | "head_tail"


@dataclass(frozen=True)
class TokenCount:
    """Tokens of text under a tokenizer, or estimated (4 characters a token) without one."""

    tokenizer: Any = None

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return (len(text) + 3) // 4
        return len(self.split(text))

    def split(self, text: str) -> list:
        if self.tokenizer is None:
            return [text[i : i + 4] for i in range(0, len(text), 4)]
        # verbose=False: no "longer than the maximum sequence length" warning, we are measuring
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def join(self, pieces: list) -> str:
        if self.tokenizer is None:
            return "".join(pieces)
        return self.tokenizer.decode(pieces, skip_special_tokens=False)


def fit_text(
    text: str,
    budget: int,
    strategy: Strategy,
    split: Callable[[str], list],
    join: Callable[[list], str],
) -> tuple[str, bool]:
    """``text`` cut to ``budget`` pieces (tokens) by ``strategy``; whether it was cut."""
    pieces = split(text)
    if len(pieces) <= budget:
        return text, False
    budget = max(budget, 0)
    if strategy == "head":
        return join(pieces[:budget]).rstrip(), True
    if strategy == "tail":
        return join(pieces[len(pieces) - budget :] if budget else []).lstrip(), True
    marker = len(split(MARKER))
    keep = max(budget - marker, 0)
    head, tail = (keep + 1) // 2, keep // 2
    ends = join(pieces[:head]).rstrip(), join(pieces[len(pieces) - tail :] if tail else []).lstrip()
    return ends[0] + MARKER.rstrip() + (" " + ends[1] if ends[1] else ""), True


def fit(
    render: Callable[[str], str],
    text: str,
    max_tokens: int,
    strategy: Strategy,
    counter: TokenCount,
) -> tuple[str, str, bool]:
    """``(prompt, text, truncated)``: the prompt ``render(text)`` within ``max_tokens``, the
    section cut by ``strategy`` when it must be. ``render`` builds the whole prompt from a
    section (system and user messages through the chat template)."""
    prompt = render(text)
    if counter.count(prompt) <= max_tokens:
        return prompt, text, False
    overhead = counter.count(render(""))
    budget = max_tokens - overhead
    for _ in range(4):  # decoding can retokenize a little longer: shrink until it fits
        cut, _ = fit_text(text, budget, strategy, counter.split, counter.join)
        prompt = render(cut)
        over = counter.count(prompt) - max_tokens
        if over <= 0:
            return prompt, cut, True
        budget -= over + 1
    return prompt, cut, True
