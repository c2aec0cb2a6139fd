"""The six built-in rewards of the research, exact, total and fast.

They score the task's answer format, whose grammar (format match, label text, valid one-hot,
think text) lives in `llmscisci_cfg.task.answer`. One choice the research's text leaves open is
made here: ``stepwise_label``'s "only 0s and 1s" needs at least one digit, so ``[]`` earns
nothing there.

**Label constraints** (off by default): a task may declare some valid one-hots unacceptable
(`llmscisci_cfg.task.constraints`, e.g. the all-zero answer). The compiler then passes
``label_constraints`` to ``label_valid``, ``stepwise_label``, ``hamming`` and
``cond_cot_stepwise``, and a label that breaks them scores exactly as an invalid label does
(``stepwise_label`` keeps the steps before "valid one-hot"). Without it every reward is the
research's, unchanged.

Every reward has TRL's contract ``fn(completions, **kwargs) -> list[float]``; completions are
strings or chat message lists. None of them raises, whatever the text.

>>> stepwise_label(["<think>x</think><label>[1, 0]</label>"], num_categories=5)
[0.375]
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmscisci_cfg.task.answer import (
    canonical,
    completion_text,
    format_match,
    label_block,
    parse_label,
    think_text,
)
from llmscisci_cfg.task.constraints import LabelRule, LabelRules, per_row
from llmscisci_cfg.task.labels import decode_label

NumCategories = int | Mapping[str, int]
"""One category count, or one per aspect (read from each example's ``aspect``)."""

_STEP_STRIP = re.compile(r"[\[\],\s]+")
_ONLY_01 = re.compile(r"[01]+")


# ----------------------------------------------------------------------------- stepwise credit


def stepwise_score(label: str | None, n: int, rule: LabelRule | None = None) -> float:
    """``stepwise_label`` for a completion whose format matched, from its label text; a label
    that breaks ``rule`` misses the "valid one-hot" step."""
    if not label:
        return 0.0
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


def _per_row_n(num_categories: NumCategories, aspect: Sequence | None, size: int) -> list[int]:
    if isinstance(num_categories, int):
        return [num_categories] * size
    aspects = list(aspect) if aspect is not None else [None] * size
    return [num_categories.get(a, 0) if isinstance(a, str) else 0 for a in aspects]


# ----------------------------------------------------------------------------- the rewards


def format_reward(completions: Sequence, **kwargs: Any) -> list[float]:
    """1.0 when the completion has the ``<think>…</think> <label>…</label>`` format, else 0.0."""
    return [1.0 if format_match(completion_text(c)) else 0.0 for c in completions]


def label_valid(
    completions: Sequence,
    *,
    num_categories: NumCategories,
    label_constraints: LabelRules = None,
    **kwargs: Any,
) -> list[float]:
    """0.5 when the format matches and the label text is a valid one-hot (keeping the task's
    label constraints, when it has any), else 0.0."""
    ns = _per_row_n(num_categories, kwargs.get("aspect"), len(completions))
    rules = per_row(label_constraints, kwargs.get("aspect"), len(completions))
    out = []
    for c, n, rule in zip(completions, ns, rules, strict=True):
        text = completion_text(c)
        label = parse_label(label_block(text)[0], n) if format_match(text) else None
        ok = label is not None and (rule is None or rule.allows(label))
        out.append(0.5 if ok else 0.0)
    return out


def stepwise_label(
    completions: Sequence,
    *,
    num_categories: NumCategories,
    label_constraints: LabelRules = None,
    **kwargs: Any,
) -> list[float]:
    """Partial credit for the label: non-empty, only 0/1, bracketed, valid one-hot (needs format)."""
    ns = _per_row_n(num_categories, kwargs.get("aspect"), len(completions))
    rules = per_row(label_constraints, kwargs.get("aspect"), len(completions))
    out = []
    for c, n, rule in zip(completions, ns, rules, strict=True):
        text = completion_text(c)
        out.append(stepwise_score(label_block(text)[0], n, rule) if format_match(text) else 0.0)
    return out


def hamming(
    completions: Sequence,
    *,
    gold: Sequence,
    num_categories: NumCategories,
    label_constraints: LabelRules = None,
    **kwargs: Any,
) -> list[float]:
    """1 − Hamming loss against ``gold`` for a closed, valid label block; else 0.0.

    ``gold`` is one label per example in any codec (list, one-hot text, human codes);
    an unreadable gold scores 0.0. A label that breaks the task's constraints scores 0.0.
    """
    ns = _per_row_n(num_categories, kwargs.get("aspect"), len(completions))
    rules = per_row(label_constraints, kwargs.get("aspect"), len(completions))
    golds = list(gold) if gold is not None else []
    out = []
    for i, (c, n, rule) in enumerate(zip(completions, ns, rules, strict=True)):
        label, closed = label_block(completion_text(c))
        pred = parse_label(label, n) if closed else None
        if pred is not None and rule is not None and not rule.allows(pred):
            pred = None
        truth = _gold(golds[i], n) if pred is not None and i < len(golds) else None
        out.append(1.0 - sum(map(operator.ne, pred, truth)) / n if truth is not None else 0.0)
    return out


def _gold(value: Any, n: int) -> list[int] | None:
    if (
        type(value) is list
        and len(value) == n
        and all(type(v) is int and 0 <= v <= 1 for v in value)
    ):
        return value  # the built dataset's list[int]: no decoding needed
    if hasattr(value, "tolist"):  # numpy / pyarrow
        value = value.tolist()
    try:
        return decode_label(value, "auto", n)
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
    num_categories: NumCategories,
    alpha: float = 0.1,
    threshold: float = 1.0,
    label_constraints: LabelRules = None,
    **kwargs: Any,
) -> list[float]:
    """``stepwise + alpha·cot_length`` when ``stepwise ≥ threshold``, else ``stepwise``."""
    texts = [completion_text(c) for c in completions]
    steps = stepwise_label(
        texts, num_categories=num_categories, label_constraints=label_constraints, **kwargs
    )
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
