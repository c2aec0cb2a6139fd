"""Dropping or truncating over-long examples, by token counts under the recipe's chat template.

As in the research: compute the ``percentile`` (default 95th) of prompt tokens and of
prompt+completion tokens on the **train** split, and drop every example above either limit,
in train and test alike (test is filtered with the train limits). Absolute limits
(``max_prompt_tokens``, ``max_total_tokens``) replace the percentile for their dimension.

With ``strategy: truncate`` an example over a limit keeps its place: its section is cut (by
`data.truncate.fit`, through the ``fit`` function the caller passes) so the prompt fits the
prompt limit and, with the answer, the total limit; only an example whose answer and
instructions alone exceed the limits is still dropped. Either way an example never moves to
another split: a dropped test example is listed in `Filtered.excluded`.

- prompt tokens: the prompt rendered with the generation prompt (what the model reads);
- total tokens: prompt + answer rendered as one conversation, for each of the method's answer
  columns (`rows.RowBuilder.answer_columns`): DPO takes the longer of chosen and rejected.
  GRPO has no answer in the data (the policy writes it, bounded by
  ``method.max_completion_length``), so GRPO filters on prompt tokens only and ignores
  ``max_total_tokens``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from llmscisci_cfg.recipe.schema import LengthFilter

Row = dict
Messages = list[dict[str, str]]
#: Token counts of conversations: ``measure(conversations, add_generation_prompt) -> lengths``.
Measure = Callable[[list[Messages], bool], list[int]]
#: ``fit(row, max_prompt_tokens) -> row`` with its prompt's section cut to fit (strategy truncate).
Fit = Callable[[Row, int], Row]

PROMPT_TOO_LONG = "prompt_too_long"
TOTAL_TOO_LONG = "total_too_long"
TRUNCATED = "truncated"  # kept, its section cut (strategy truncate)


@dataclass(frozen=True)
class Limits:
    """Largest kept token counts (None: no limit)."""

    prompt: int | None
    total: int | None


def percentile(values: list[int], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), pure Python.

    >>> percentile([1, 2, 3, 4, 5], 50)
    3.0
    >>> percentile([10, 20], 95)
    19.5
    """
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def lengths(
    rows: list[Row], answers: tuple[str, ...], measure: Measure
) -> tuple[list[int], list[int] | None]:
    """Prompt token counts and, for a method with ``answers`` (its answer columns), the
    prompt+answer token counts of ``rows`` (the longest answer of each row)."""
    prompts = measure([r["prompt"] for r in rows], True)
    if not answers:
        return prompts, None
    per_answer = [measure([r["prompt"] + r[a] for r in rows], False) for a in answers]
    return prompts, [max(v) for v in zip(*per_answer, strict=True)]


def limits_for(spec: LengthFilter, prompt: list[int], total: list[int] | None) -> Limits:
    """Limits from absolute values, else the percentile of the (train) counts given."""

    def one(absolute: int | None, values: list[int] | None) -> int | None:
        if values is None:
            return None
        if absolute is not None:
            return absolute
        if spec.percentile is None or not values:
            return None
        return math.floor(percentile(values, spec.percentile))

    return Limits(
        prompt=one(spec.max_prompt_tokens, prompt), total=one(spec.max_total_tokens, total)
    )


@dataclass
class Filtered:
    """The rows kept per split, what was dropped (by reason) and truncated, and the limits.

    ``counts`` is per split and aspect: ``{split: {aspect: {reason | TRUNCATED: n}}}``;
    ``excluded`` names each dropped row per split as ``(id, aspect, reason)``.
    """

    kept: dict[str, list[Row]]
    dropped: Counter
    limits: Limits
    counts: dict[str, dict[str, Counter]]
    excluded: dict[str, list[tuple[str, str, str]]]


def filter_splits(
    splits: dict[str, list[Row]],
    spec: LengthFilter,
    answers: tuple[str, ...],
    measure: Measure,
    fit: Fit | None = None,
) -> Filtered:
    """Drop rows over the limits computed on ``splits['train']``, or (``spec.strategy``
    truncate, with ``fit``) cut their section to fit; count both per split and aspect.
    ``answers``: the method's answer columns (none: prompt tokens only)."""
    counts = {name: lengths(rows, answers, measure) for name, rows in splits.items()}
    prompt, total = counts.get("train", ([], [] if answers else None))
    limits = limits_for(spec, prompt, total)
    fit = fit if spec.strategy == "truncate" else None
    out = Filtered({}, Counter(), limits, {}, {})
    for name, rows in splits.items():
        p_len, t_len = counts[name]
        out.kept[name], out.excluded[name], tally = [], [], out.counts.setdefault(name, {})
        for i, row in enumerate(rows):
            total_i = t_len[i] if t_len is not None else None
            reason = over(limits, p_len[i], total_i)
            if reason is not None and fit is not None:
                cut = fitted(row, fit, limits, p_len[i], total_i, answers, measure)
                if cut is not None:
                    row, reason = cut, TRUNCATED
            mine = tally.setdefault(str(row.get("aspect", "")), Counter())
            if reason is not None:
                mine[reason] += 1
            if reason is None or reason == TRUNCATED:
                out.kept[name].append(row)
            else:
                out.dropped[reason] += 1
                out.excluded[name].append(
                    (str(row.get("id", "")), str(row.get("aspect", "")), reason)
                )
    return out


def over(limits: Limits, prompt: int, total: int | None) -> str | None:
    """The drop reason for these counts, or None when they are within the limits."""
    if limits.prompt is not None and prompt > limits.prompt:
        return PROMPT_TOO_LONG
    if limits.total is not None and total is not None and total > limits.total:
        return TOTAL_TOO_LONG
    return None


def fitted(
    row: Row,
    fit: Fit,
    limits: Limits,
    prompt: int,
    total: int | None,
    answers: tuple[str, ...],
    measure: Measure,
) -> Row | None:
    """``row`` cut to the limits (its prompt to the prompt limit, less the answer's tokens
    under the total limit), or None when even a cut row cannot fit."""
    budget = limits.prompt if limits.prompt is not None else prompt
    if limits.total is not None and total is not None:
        budget = min(budget, limits.total - (total - prompt))
    if budget <= 0:
        return None
    cut = fit(row, budget)
    p_len, t_len = lengths([cut], answers, measure)
    return cut if over(limits, p_len[0], t_len[0] if t_len else None) is None else None


def token_measure(tokenizer) -> Measure:
    """A `Measure` that renders with the tokenizer's chat template and batch-tokenizes (the
    plain way; the build counts most examples faster and identically, `measure.Prompts`)."""
    from llmscisci_cfg.data.measure import plain_measure

    return plain_measure(tokenizer)
