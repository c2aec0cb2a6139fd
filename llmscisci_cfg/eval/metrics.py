"""Task metrics for labelled predictions: validity rates, Hamming loss, exact match, P/R/F1.

Pure Python (no numpy), so a report can be recomputed anywhere from ``predictions.jsonl``.

**Invalid predictions are wrong everywhere.** An example whose completion has no valid
one-hot label (``predicted`` is None) is scored as the complement of its gold vector: its
Hamming loss is 1, and every category adds a false positive (gold 0) or a false negative
(gold 1). Invalid predictions are never skipped.

**0/0 conventions.** With TP, FP, FN the counts of one category:

- F1 = 2·TP / (2·TP + FP + FN); precision = TP / (TP + FP); recall = TP / (TP + FN).
- A ratio whose denominator is 0 is 1.0 when the category has no error at all
  (TP = FP = FN = 0: never in gold and never predicted, so every example was correctly
  negative) and 0.0 otherwise (never predicted but present in gold: precision 0; predicted
  but never in gold: recall 0). Then F1 = 2PR / (P + R) holds in every case.
- Micro F1 applies the same rule to the counts summed over categories; macro F1 is the mean
  of the per-category F1 values, every category included.
- Examples without a gold label (``gold`` None) count in the validity rates and the mean
  reward but not in the label metrics; with no labelled example those metrics are None.

>>> rows = [Scored("easy", [1, 0], [1, 0], True), Scored("easy", [0, 1], None, False)]
>>> m = aspect_metrics(rows, ["a", "b"])
>>> (m.label_valid_rate, m.hamming_loss, m.exact_match, m.micro_f1)
(0.5, 0.5, 0.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

INVALID_RULE = (
    "An invalid or missing prediction (no `<label>` block holding a valid one-hot list) counts "
    "as wrong in every category: it is scored as the complement of the gold vector, so its "
    "Hamming loss is 1 and it adds a false positive or a false negative in each category. "
    "It is never skipped."
)
ZERO_DIVISION_RULE = (
    "A precision, recall or F1 with a zero denominator is 1.0 when the category has no error "
    "at all (never in gold and never predicted) and 0.0 otherwise; macro F1 averages every category."
)


@dataclass(frozen=True)
class Scored:
    """One example as the metrics see it.

    ``predicted`` is the parsed one-hot label or None (invalid); ``format_valid`` says whether
    the completion matched the response format; ``rewards`` maps reward name → value.
    """

    aspect: str
    gold: list[int] | None
    predicted: list[int] | None
    format_valid: bool
    reward: float | None = None
    rewards: dict[str, float] = field(default_factory=dict)


@dataclass
class CategoryScore:
    """Precision, recall and F1 of one category, with the counts they come from."""

    precision: float
    recall: float
    f1: float
    support: int
    tp: int
    fp: int
    fn: int


@dataclass
class Metrics:
    """The metrics of one model on one aspect (or ``overall``)."""

    n: int
    n_labelled: int
    format_valid_rate: float
    label_valid_rate: float
    hamming_loss: float | None
    exact_match: float | None
    micro_precision: float | None
    micro_recall: float | None
    micro_f1: float | None
    macro_f1: float | None
    per_category: dict[str, CategoryScore]
    mean_reward: float | None
    mean_rewards: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- scoring rules


def effective_prediction(gold: Sequence[int], predicted: Sequence[int] | None) -> list[int]:
    """What is scored: the prediction, or the complement of gold when it is invalid.

    >>> effective_prediction([1, 0, 0], None)
    [0, 1, 1]
    """
    if predicted is None or len(predicted) != len(gold):
        return [1 - g for g in gold]
    return list(predicted)


def ratio(num: int, den: int, clean: bool) -> float:
    """``num / den``; 0/0 is 1.0 when ``clean`` (nothing went wrong), else 0.0."""
    if den == 0:
        return 1.0 if clean else 0.0
    return num / den


def category_score(tp: int, fp: int, fn: int) -> CategoryScore:
    """P/R/F1 from counts with the module's 0/0 convention.

    >>> category_score(0, 0, 0).f1, category_score(0, 3, 0).f1, category_score(0, 0, 2).precision
    (1.0, 0.0, 0.0)
    """
    clean = tp == fp == fn == 0
    return CategoryScore(
        precision=ratio(tp, tp + fp, clean),
        recall=ratio(tp, tp + fn, clean),
        f1=ratio(2 * tp, 2 * tp + fp + fn, clean),
        support=tp + fn,
        tp=tp,
        fp=fp,
        fn=fn,
    )


# ----------------------------------------------------------------------------- aggregation


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _counts(rows: list[Scored], n: int) -> list[tuple[int, int, int]]:
    """(TP, FP, FN) per category over the labelled rows."""
    tp, fp, fn = [0] * n, [0] * n, [0] * n
    for row in rows:
        pred = effective_prediction(row.gold, row.predicted)
        for i, (g, p) in enumerate(zip(row.gold, pred, strict=True)):
            tp[i] += g == 1 and p == 1
            fp[i] += g == 0 and p == 1
            fn[i] += g == 1 and p == 0
    return list(zip(tp, fp, fn, strict=True))


def _hamming(row: Scored) -> float:
    pred = effective_prediction(row.gold, row.predicted)
    return sum(g != p for g, p in zip(row.gold, pred, strict=True)) / len(row.gold)


def _reward_means(rows: list[Scored]) -> tuple[float | None, dict[str, float]]:
    totals = [r.reward for r in rows if r.reward is not None]
    names = list(dict.fromkeys(name for r in rows for name in r.rewards))
    means = {name: _mean([r.rewards[name] for r in rows if name in r.rewards]) for name in names}
    return (_mean(totals) if totals else None), means


def _metrics(rows: list[Scored], per_category: dict[str, tuple[int, int, int]]) -> Metrics:
    if not rows:
        raise ValueError("no examples to score")
    labelled = [r for r in rows if r.gold is not None]
    scores = {name: category_score(*c) for name, c in per_category.items()}
    mean_reward, mean_rewards = _reward_means(rows)
    base = {
        "n": len(rows),
        "n_labelled": len(labelled),
        "format_valid_rate": sum(r.format_valid for r in rows) / len(rows),
        "label_valid_rate": sum(r.predicted is not None for r in rows) / len(rows),
        "mean_reward": mean_reward,
        "mean_rewards": mean_rewards,
    }
    if not labelled:
        return Metrics(
            **base,
            hamming_loss=None,
            exact_match=None,
            micro_precision=None,
            micro_recall=None,
            micro_f1=None,
            macro_f1=None,
            per_category={},
        )
    tp, fp, fn = (sum(c[k] for c in per_category.values()) for k in range(3))
    micro = category_score(tp, fp, fn)
    return Metrics(
        **base,
        hamming_loss=_mean([_hamming(r) for r in labelled]),
        exact_match=sum(r.predicted == r.gold for r in labelled) / len(labelled),
        micro_precision=micro.precision,
        micro_recall=micro.recall,
        micro_f1=micro.f1,
        macro_f1=_mean([s.f1 for s in scores.values()]),
        per_category=scores,
    )


def aspect_metrics(rows: list[Scored], categories: list[str]) -> Metrics:
    """Metrics of one aspect's rows; ``categories`` names the label positions in order."""
    labelled = [r for r in rows if r.gold is not None]
    _check_lengths(labelled, len(categories))
    if not labelled:
        return _metrics(rows, {})
    counts = _counts(labelled, len(categories))
    return _metrics(rows, dict(zip(categories, counts, strict=True)))


def overall_metrics(rows: list[Scored], categories: dict[str, list[str]]) -> Metrics:
    """Metrics pooled over aspects: per-example means, summed counts for micro F1, and
    ``per_category`` keyed ``aspect/category`` (macro F1 averages all of them)."""
    per_category: dict[str, tuple[int, int, int]] = {}
    for aspect, names in categories.items():
        labelled = [r for r in rows if r.aspect == aspect and r.gold is not None]
        if labelled:
            _check_lengths(labelled, len(names))
            counts = _counts(labelled, len(names))
            per_category.update(
                {f"{aspect}/{name}": c for name, c in zip(names, counts, strict=True)}
            )
    return _metrics(rows, per_category)


def _check_lengths(rows: list[Scored], n: int) -> None:
    for row in rows:
        if len(row.gold) != n:
            raise ValueError(
                f"{row.aspect}: gold {row.gold} has {len(row.gold)} labels, task has {n}"
            )


def model_report(rows: list[Scored], categories: dict[str, list[str]]) -> dict[str, Metrics]:
    """``{"overall": …, aspect: …}`` for one model; aspects in task order, absent ones left out."""
    unknown = sorted({r.aspect for r in rows} - set(categories))
    if unknown:
        raise ValueError(f"rows name aspects {unknown} that the task does not have")
    out = {"overall": overall_metrics(rows, categories)}
    for aspect, names in categories.items():
        mine = [r for r in rows if r.aspect == aspect]
        if mine:
            out[aspect] = aspect_metrics(mine, names)
    return out


def report(
    rows_by_model: dict[str, list[Scored]], categories: dict[str, list[str]]
) -> dict[str, Any]:
    """The JSON report: ``{model: {"overall" | aspect: metrics dict}}``."""
    return {
        model: {key: m.as_dict() for key, m in model_report(rows, categories).items()}
        for model, rows in rows_by_model.items()
    }
