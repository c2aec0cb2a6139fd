"""The built-in rewards: the research's six, exact, total and fast, for every answer kind.

They score the task's answer format, whose grammar (format match, label text, think text)
lives in `llmscisci_cfg.task.answer`, and its label through the aspect's answer kind
(`llmscisci_cfg.task.kinds`, injected as ``label_kind``: one kind, or one per aspect read from
each example's ``aspect``). On the reproducibility task (``multi``: a one-hot list) every reward
is the research's, unchanged. One choice the research's text leaves open is made here:
``stepwise_label``'s "only 0s and 1s" needs at least one digit, so ``[]`` earns nothing there.

For the other kinds: ``label_valid`` asks for a valid label of the kind (one known category
name; an object of known dimensions and levels); ``stepwise_label`` gives 0.375 for a non-empty
label and the remaining 0.625 for a valid one; ``correct`` (and ``hamming``, its research name)
is the kind's correctness: exact match for ``single``, 1 − Hamming loss for ``multi``,
per-dimension agreement (absent counting as a level) for ``dimensions``.

**Label constraints.** The task's constraints (e.g. the reproducibility task's "category 5
alone, at least one category") shape decoding and which answers eval and predict count valid;
the research's rewards accept every valid one-hot, ``[0, 0, 0, 0, 0]`` included. A reward with
``params: {constrained: true}`` scores a label that breaks them exactly as an invalid label
(``stepwise_label`` keeps the steps before "valid").

Every reward has TRL's contract ``fn(completions, **kwargs) -> list[float]``; completions are
strings or chat message lists. None of them raises, whatever the text.

>>> stepwise_label(["<think>x</think><label>[1, 0]</label>"], label_kind=MultiLabel.plain(5))
[0.375]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from llmscisci_cfg.task.answer import (
    canonical,
    completion_text,
    format_match,
    label_block,
    parse_label,
    think_text,
)
from llmscisci_cfg.task.kinds import LabelKind, MultiLabel

LabelKinds = LabelKind | Mapping[str, LabelKind]
"""One label kind, or one per aspect (read from each example's ``aspect``)."""

_STEP_STRIP = re.compile(r"[\[\],\s]+")
_ONLY_01 = re.compile(r"[01]+")


def kinds_for(label_kind: LabelKinds, aspect: Sequence | None, size: int, constrained: bool):
    """The label kind of each of ``size`` examples (None for an aspect the task lacks);
    without ``constrained``, a one-hot kind's label constraints are left out (the research's
    rewards)."""
    if isinstance(label_kind, Mapping):
        aspects = list(aspect) if aspect is not None else [None] * size
        kinds = [label_kind.get(a) if isinstance(a, str) else None for a in aspects]
        if aspect is None and len({_scores_alike(k) for k in label_kind.values()}) == 1:
            kinds = [next(iter(label_kind.values()))] * size  # no aspect column: all alike
    else:
        kinds = [label_kind] * size
    if constrained:
        return kinds
    return [replace(k, rule=None) if isinstance(k, MultiLabel) and k.rule else k for k in kinds]


def _scores_alike(kind: LabelKind) -> Any:
    """What decides a kind's rewards: a one-hot list's length and rule (its category names
    only name the positions), any other kind whole."""
    return (kind.kind, kind.n, kind.rule) if isinstance(kind, MultiLabel) else kind


# ----------------------------------------------------------------------------- stepwise credit


def stepwise_score(label: str | None, kind: LabelKind) -> float:
    """``stepwise_label`` for a completion whose format matched, from its label text."""
    if not label:
        return 0.0
    if not isinstance(kind, MultiLabel):
        return 1.0 if kind.parse(label) is not None else 0.375
    n, rule = kind.n, kind.rule
    known = canonical(n).get(label)
    if known is not None and (rule is None or rule.allows(known)):
        return 1.0  # "[1, 0, 1, 0, 0]" earns every step
    score = 0.125
    if _ONLY_01.fullmatch(_STEP_STRIP.sub("", label)):
        score += 0.125
    if label[0] == "[" and label[-1] == "]":
        score += 0.125
    parsed = known if known is not None else parse_label(label, n)
    if parsed is not None and (rule is None or rule.allows(parsed)):
        score += 0.625
    return score


# ----------------------------------------------------------------------------- the rewards


def format_reward(completions: Sequence, **kwargs: Any) -> list[float]:
    """1.0 when the completion has the ``<think>…</think> <label>…</label>`` format, else 0.0."""
    return [1.0 if format_match(completion_text(c)) else 0.0 for c in completions]


def label_valid(
    completions: Sequence, *, label_kind: LabelKinds, constrained: bool = False, **kwargs: Any
) -> list[float]:
    """0.5 when the format matches and the label text is a valid label of the kind, else 0.0."""
    kinds = kinds_for(label_kind, kwargs.get("aspect"), len(completions), constrained)
    out = []
    for c, kind in zip(completions, kinds, strict=True):
        text = completion_text(c)
        ok = (
            kind is not None and format_match(text) and kind.parse(label_block(text)[0]) is not None
        )
        out.append(0.5 if ok else 0.0)
    return out


def stepwise_label(
    completions: Sequence, *, label_kind: LabelKinds, constrained: bool = False, **kwargs: Any
) -> list[float]:
    """Partial credit for the label: non-empty, only 0/1, bracketed, valid one-hot (needs format)."""
    kinds = kinds_for(label_kind, kwargs.get("aspect"), len(completions), constrained)
    out = []
    for c, kind in zip(completions, kinds, strict=True):
        text = completion_text(c)
        ok = kind is not None and format_match(text)
        out.append(stepwise_score(label_block(text)[0], kind) if ok else 0.0)
    return out


def correct(
    completions: Sequence,
    *,
    gold: Sequence,
    label_kind: LabelKinds,
    constrained: bool = False,
    **kwargs: Any,
) -> list[float]:
    """The kind's correctness against ``gold`` for a closed, valid label block; else 0.0.

    Exact match (``single``), 1 − Hamming loss (``multi``: the research's ``hamming``),
    per-dimension agreement (``dimensions``). ``gold`` is one label per example in any codec
    of the kind; an unreadable gold scores 0.0.
    """
    kinds = kinds_for(label_kind, kwargs.get("aspect"), len(completions), constrained)
    golds = list(gold) if gold is not None else []
    out = []
    for i, (c, kind) in enumerate(zip(completions, kinds, strict=True)):
        label, closed = label_block(completion_text(c))
        pred = kind.parse(label) if closed and kind is not None else None
        truth = _gold(golds[i], kind) if pred is not None and i < len(golds) else None
        out.append(kind.score(truth, pred) if truth is not None else 0.0)
    return out


def hamming(
    completions: Sequence,
    *,
    gold: Sequence,
    label_kind: LabelKinds,
    constrained: bool = False,
    **kwargs: Any,
) -> list[float]:
    """1 − Hamming loss against ``gold`` for a closed, valid label block; else 0.0 (the
    research's name for `correct`)."""
    return correct(completions, gold=gold, label_kind=label_kind, constrained=constrained, **kwargs)


def _gold(value: Any, kind: LabelKind) -> Any:
    if hasattr(value, "tolist"):  # numpy / pyarrow
        value = value.tolist()
    if kind.valid(value):
        return value  # the built dataset's value: no decoding needed
    try:
        return kind.decode_gold(value)
    except Exception:
        return None


def cot_length(completions: Sequence, *, tokenizer: Any, **kwargs: Any) -> list[float]:
    """Tokens in the stripped think block when the format matches, else 0 (one tokenizer call)."""
    thinks = [think_text(completion_text(c)) for c in completions]
    return _token_counts(tokenizer, thinks)


def cond_cot_stepwise(
    completions: Sequence,
    *,
    tokenizer: Any,
    label_kind: LabelKinds,
    alpha: float = 0.1,
    threshold: float = 1.0,
    constrained: bool = False,
    **kwargs: Any,
) -> list[float]:
    """``stepwise + alpha·cot_length`` when ``stepwise ≥ threshold``, else ``stepwise``."""
    texts = [completion_text(c) for c in completions]
    steps = stepwise_label(texts, label_kind=label_kind, constrained=constrained, **kwargs)
    thinks = [think_text(t) if s >= threshold else None for t, s in zip(texts, steps, strict=True)]
    lengths = _token_counts(tokenizer, thinks)
    return [s + alpha * k if s >= threshold else s for s, k in zip(steps, lengths, strict=True)]


def _token_counts(tokenizer: Any, thinks: list[str | None]) -> list[float]:
    """Token counts of the non-None texts in one tokenizer call; None counts 0."""
    todo = [t for t in thinks if t is not None]
    counts = iter(count_tokens(tokenizer, todo) if todo else [])
    return [float(next(counts)) if t is not None else 0.0 for t in thinks]


def count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token count of each text, from one batched call of a Hugging Face-style tokenizer."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(x) for x in ids]


class WhitespaceTokenizer:
    """A stand-in tokenizer that counts whitespace-separated words (``rewards test`` fallback)."""

    name = "whitespace word count"

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict[str, list]:
        return {"input_ids": [t.split() for t in texts]}


RewardFunc = Callable[..., list[float]]
