"""Task metrics for labelled predictions: validity rates, Hamming loss, exact match, P/R/F1.

The label metrics come from scikit-learn (`multilabel_confusion_matrix`,
`precision_recall_fscore_support`, `hamming_loss`, `accuracy_score` for exact match, i.e.
subset accuracy), under two conventions of ours.

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
  scikit-learn's ``zero_division`` is one value for every category, so we score with
  ``zero_division=0.0`` and then set the categories with TP = FP = FN = 0 to 1.0.
- Micro F1 applies the same rule to the counts summed over categories (``zero_division`` is
  1.0 exactly when every category is error-free); macro F1 is the mean of the per-category
  F1 values after that correction, every category included (scikit-learn's own macro average
  would count an error-free category as 0).
- Examples without a gold label (``gold`` None) count in the validity rates and the mean
  reward but not in the label metrics; with no labelled example those metrics are None.
- ``overall`` pools the aspects: Hamming loss and exact match are means over examples,
  micro F1 sums the counts, ``per_category`` is keyed ``aspect/category``.

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

import numpy as np

INVALID_RULE = (
    "An invalid or missing prediction (no `<label>` block holding a valid one-hot list) counts "
    "as wrong in every category: it is scored as the complement of the gold vector, so its "
    "Hamming loss is 1 and it adds a false positive or a false negative in each category. "
    "It is never skipped."
)
ZERO_DIVISION_RULE = (
    "A precision, recall or F1 with a zero denominator is 1.0 when the category has no error "
    "at all (TP = FP = FN = 0: never in gold and never predicted) and 0.0 otherwise; "
    "scikit-learn scores with zero_division=0 and those error-free categories are then set to "
    "1.0. Micro F1 applies the rule to the summed counts; macro F1 averages every category."
)


@dataclass(frozen=True)
class Scored:
    """One example as the metrics see it.

    ``predicted`` is the parsed one-hot label or None (invalid); ``format_valid`` says whether
    the completion matched the response format; ``rewards`` maps reward name → value;
    ``doc`` is the document the example comes from (the bootstrap's resampling unit).
    """

    aspect: str
    gold: list[int] | None
    predicted: list[int] | None
    format_valid: bool
    reward: float | None = None
    rewards: dict[str, float] = field(default_factory=dict)
    doc: str = ""


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
    tn: int | None = None  # None when only TP/FP/FN were given


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


def category_score(tp: int, fp: int, fn: int, tn: int | None = None) -> CategoryScore:
    """P/R/F1 from counts with the module's 0/0 convention (the plain-Python reference).

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
        tn=tn,
    )


# ----------------------------------------------------------------------------- scikit-learn


@dataclass
class Block:
    """The labelled examples of one aspect as indicator matrices: gold and scored prediction."""

    names: list[str]  # category keys, in label order
    gold: np.ndarray  # (examples, categories), 0/1
    pred: np.ndarray  # the effective prediction (complement of gold where invalid)


def block(labelled: list[Scored], names: list[str]) -> Block:
    """``labelled`` (every row has a gold label of ``len(names)``) as a `Block`."""
    _check_lengths(labelled, len(names))
    shape = (len(labelled), len(names))
    gold = np.array([r.gold for r in labelled], dtype=np.int8).reshape(shape)
    pred = np.array(
        [effective_prediction(r.gold, r.predicted) for r in labelled], dtype=np.int8
    ).reshape(shape)
    return Block(names, gold, pred)


def category_scores(b: Block) -> dict[str, CategoryScore]:
    """Per-category P/R/F1 and confusion counts of one block (scikit-learn + our 0/0 rule)."""
    from sklearn.metrics import multilabel_confusion_matrix, precision_recall_fscore_support

    gold, pred, labels = _sklearn_view(b.gold, b.pred)
    cm = multilabel_confusion_matrix(gold, pred, labels=labels)  # (k, 2, 2): [[tn, fp], [fn, tp]]
    p, r, f, _ = precision_recall_fscore_support(
        gold, pred, labels=labels, average=None, zero_division=0.0
    )
    out = {}
    for i, name in enumerate(b.names):
        (tn, fp), (fn, tp) = cm[i].tolist()
        clean = tp == fp == fn == 0
        out[name] = CategoryScore(
            precision=1.0 if clean else float(p[i]),
            recall=1.0 if clean else float(r[i]),
            f1=1.0 if clean else float(f[i]),
            support=tp + fn,
            tp=tp,
            fp=fp,
            fn=fn,
            tn=tn,
        )
    return out


def _sklearn_view(gold: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    """What scikit-learn reads as multilabel: one column is a binary target, scored for label 1."""
    if gold.shape[1] == 1:
        return gold.ravel(), pred.ravel(), [1]
    return gold, pred, None


def _pooled(blocks: list[Block]) -> tuple[np.ndarray, np.ndarray]:
    """The blocks stacked block-diagonally: a row is 0 (gold and predicted) outside its aspect,
    which adds only true negatives, so micro counts and subset accuracy are unchanged."""
    rows = sum(len(b.gold) for b in blocks)
    cols = sum(len(b.names) for b in blocks)
    gold, pred = np.zeros((rows, cols), np.int8), np.zeros((rows, cols), np.int8)
    r = c = 0
    for b in blocks:
        n, k = b.gold.shape
        gold[r : r + n, c : c + k], pred[r : r + n, c : c + k] = b.gold, b.pred
        r, c = r + n, c + k
    return gold, pred


def _label_metrics(blocks: list[Block]) -> dict[str, Any]:
    """Hamming loss, exact match, micro P/R/F1, macro F1 and per-category scores of the blocks."""
    from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

    per_category = {k: v for b in blocks for k, v in category_scores(b).items()}
    gold, pred, labels = _sklearn_view(*_pooled(blocks))
    clean = not any(s.tp or s.fp or s.fn for s in per_category.values())
    p, r, f, _ = precision_recall_fscore_support(
        gold, pred, labels=labels, average="micro", zero_division=1.0 if clean else 0.0
    )
    n = len(gold)
    hamming = math.fsum(len(b.gold) * hamming_loss(b.gold, b.pred) for b in blocks) / n
    return {
        "hamming_loss": hamming,  # mean over examples of the share of wrong positions
        "exact_match": float(accuracy_score(gold, pred)),
        "micro_precision": float(p),
        "micro_recall": float(r),
        "micro_f1": float(f),
        "macro_f1": math.fsum(s.f1 for s in per_category.values()) / len(per_category),
        "per_category": per_category,
    }


# ----------------------------------------------------------------------------- aggregation


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _reward_means(rows: list[Scored]) -> tuple[float | None, dict[str, float]]:
    totals = [r.reward for r in rows if r.reward is not None]
    names = list(dict.fromkeys(name for r in rows for name in r.rewards))
    means = {name: _mean([r.rewards[name] for r in rows if name in r.rewards]) for name in names}
    return (_mean(totals) if totals else None), means


def _metrics(rows: list[Scored], blocks: list[Block]) -> Metrics:
    if not rows:
        raise ValueError("no examples to score")
    mean_reward, mean_rewards = _reward_means(rows)
    labels = _label_metrics(blocks) if blocks else _NO_LABELS
    return Metrics(
        n=len(rows),
        n_labelled=sum(len(b.gold) for b in blocks),
        format_valid_rate=sum(r.format_valid for r in rows) / len(rows),
        label_valid_rate=sum(r.predicted is not None for r in rows) / len(rows),
        mean_reward=mean_reward,
        mean_rewards=mean_rewards,
        **labels,
    )


_NO_LABELS: dict[str, Any] = {
    "hamming_loss": None,
    "exact_match": None,
    "micro_precision": None,
    "micro_recall": None,
    "micro_f1": None,
    "macro_f1": None,
    "per_category": {},
}


def aspect_metrics(rows: list[Scored], categories: list[str]) -> Metrics:
    """Metrics of one aspect's rows; ``categories`` names the label positions in order."""
    labelled = [r for r in rows if r.gold is not None]
    return _metrics(rows, [block(labelled, categories)] if labelled else [])


def overall_metrics(rows: list[Scored], categories: dict[str, list[str]]) -> Metrics:
    """Metrics pooled over aspects: per-example means, summed counts for micro F1, and
    ``per_category`` keyed ``aspect/category`` (macro F1 averages all of them)."""
    blocks = []
    for aspect, names in categories.items():
        labelled = [r for r in rows if r.aspect == aspect and r.gold is not None]
        if labelled:
            blocks.append(block(labelled, [f"{aspect}/{name}" for name in names]))
    return _metrics(rows, blocks)


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


def frequencies(
    rows_by_model: dict[str, list[Scored]], categories: dict[str, list[str]]
) -> dict[str, dict[str, int]]:
    """How often each ``aspect/category`` is 1: in gold (each labelled ``(doc, aspect)`` once)
    and in each model's valid predictions (an invalid prediction names no category).

    >>> rows = [Scored("e", [1, 0], [1, 1], True, doc="d1"), Scored("e", [1, 1], None, False, doc="d2")]
    >>> frequencies({"policy": rows}, {"e": ["a", "b"]})
    {'gold': {'e/a': 2, 'e/b': 1}, 'policy': {'e/a': 1, 'e/b': 1}}
    """
    keys = [f"{a}/{name}" for a, names in categories.items() for name in names]
    gold_of = {}
    for rows in rows_by_model.values():
        for r in rows:
            if r.gold is not None:
                gold_of.setdefault((r.doc, r.aspect), r.gold)
    out = {"gold": _count(((a, g) for (_, a), g in gold_of.items()), categories, keys)}
    for model, rows in rows_by_model.items():
        answers = ((r.aspect, r.predicted) for r in rows if r.predicted is not None)
        out[model] = _count(answers, categories, keys)
    return out


def _count(vectors, categories: dict[str, list[str]], keys: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(keys, 0)
    for aspect, vector in vectors:
        for name, v in zip(categories[aspect], vector, strict=False):
            counts[f"{aspect}/{name}"] += int(v == 1)
    return counts
