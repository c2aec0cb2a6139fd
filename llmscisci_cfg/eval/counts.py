"""Count tables by answer kind: every label metric is a function of summed per-example counts.

One model's examples of one *part* (an aspect, or every aspect pooled) become a matrix with one
row per labelled example and one column per count (`Layout`). The column sums are the counts
of the whole set; a bootstrap resample is a weighted sum of the rows (weights: how often each
unit was drawn); `metrics` turns any such sums into metric values, vectorised over resamples.
Point estimates and resamples go through the same function, so they follow one convention.

Counts per example, by kind (``K`` classes: categories, or dimensions):

- every kind: ``labelled`` (1), ``correct`` (the whole answer right), ``invalid`` (no valid
  answer), then three blocks of ``K``: ``support`` (gold has the class), ``predicted`` (the
  scored prediction has it) and ``tp`` (both);
- ``multi``: ``hamming`` (the share of the aspect's categories that are wrong), ``jaccard``
  (|gold ∩ predicted| / |gold ∪ predicted|, 1 when both are empty);
- ``dimensions``: ``cells`` (the aspect's dimensions), ``level_agree`` (dimensions whose level,
  absent counting as a level, is right), ``jaccard`` (of the present sets).

**What an invalid answer scores** (no answer, one that does not parse, an unknown name): wrong
everywhere. ``single``: it names no class, so it is a false negative of the gold class and a
false positive of none (scikit-learn: a label outside ``labels=``). ``multi`` and
``dimensions``: it is scored as the complement of the gold presence vector, so every category
(dimension) is a false positive or a false negative, its Jaccard is 0, and no dimension's
level is right.

**Averages** (`metrics`): precision, recall and F1 are averaged (macro, micro, weighted) over
the classes with gold support in the evaluated set (``support_mask``, fixed from the full set
and kept by every resample), as scikit-learn's ``precision_recall_fscore_support`` with
``labels=`` those classes and ``zero_division=0``: a ratio whose denominator is 0 is 0 (a
class never predicted has precision 0; a class of the set that a resample happens not to
contain has recall and F1 0). A class without gold support has no per-class precision,
recall or F1 (NaN here, null in reports) and stays out of every average; what it was
predicted still counts against accuracy, Hamming loss, Jaccard and the dimension rates.

>>> from llmscisci_cfg.task.kinds import SingleLabel
>>> lay = layout({"a": SingleLabel(("x", "y", "z"))})
>>> t = table(lay, ["a", "a", "a"], [0, 1, 1], [0, 2, None])
>>> m, per = metrics(lay, t.sum(axis=0), support_mask(lay, t.sum(axis=0)))
>>> float(m["accuracy"][0]), float(m["macro_recall"][0]), per["f1"][0].tolist()
(0.3333333333333333, 0.5, [1.0, 0.0, nan])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmscisci_cfg.task.kinds import LabelKind

SCALARS: dict[str, tuple[str, ...]] = {
    "single": ("labelled", "correct", "invalid"),
    "multi": ("labelled", "correct", "invalid", "hamming", "jaccard"),
    "dimensions": ("labelled", "correct", "invalid", "cells", "level_agree", "jaccard"),
}
AVERAGED = tuple(
    f"{avg}_{m}" for avg in ("macro", "micro", "weighted") for m in ("precision", "recall", "f1")
)
#: The label metrics of each kind, in report order.
METRICS: dict[str, tuple[str, ...]] = {
    "single": ("accuracy", *AVERAGED),
    "multi": ("accuracy", "hamming_loss", "jaccard", *AVERAGED),
    "dimensions": (
        "dimension_accuracy",
        "intensity_accuracy",
        "fn_rate",
        "fp_rate",
        "jaccard",
        "accuracy",
        *AVERAGED,
    ),
}
#: Per-class values.
PER_CLASS = ("precision", "recall", "f1")
#: Metrics where lower is better (everything else: higher is better).
LOWER_IS_BETTER = frozenset({"hamming_loss", "fn_rate", "fp_rate"})


@dataclass(frozen=True)
class Layout:
    """The columns of one part's count table.

    ``keys`` names the classes in order: ``category`` for one aspect, ``aspect/category`` when
    several aspects are pooled; ``blocks`` gives each aspect's slice of them."""

    kind: str
    kinds: Mapping[str, LabelKind]
    keys: tuple[str, ...]
    blocks: Mapping[str, tuple[int, int]]

    @property
    def scalars(self) -> tuple[str, ...]:
        return SCALARS[self.kind]

    @property
    def k(self) -> int:
        return len(self.keys)

    @property
    def width(self) -> int:
        return len(self.scalars) + 3 * self.k

    def col(self, name: str) -> int:
        return self.scalars.index(name)

    def block(self, name: str) -> slice:
        """The ``support``, ``predicted`` or ``tp`` columns."""
        start = len(self.scalars) + ("support", "predicted", "tp").index(name) * self.k
        return slice(start, start + self.k)


def layout(kinds: Mapping[str, LabelKind]) -> Layout:
    """The layout of a part made of ``kinds``' aspects (every aspect of one kind).

    One aspect keys its classes by name; several by ``aspect/name``."""
    found = {k.kind for k in kinds.values()}
    if len(found) != 1:
        raise ValueError(f"a part mixes answer kinds: {sorted(found)}")
    pooled = len(kinds) > 1
    keys: list[str] = []
    blocks = {}
    for aspect, kind in kinds.items():
        start = len(keys)
        keys += [f"{aspect}/{c}" if pooled else c for c in kind.categories]
        blocks[aspect] = (start, len(keys))
    return Layout(found.pop(), dict(kinds), tuple(keys), blocks)


# ----------------------------------------------------------------------------- tables


def table(
    lay: Layout, aspects: Sequence[str], gold: Sequence[Any], predicted: Sequence[Any]
) -> np.ndarray:
    """One row of counts per example (every gold is a valid value of its aspect's kind;
    a prediction that is None, or not a valid value, is invalid).

    Rows come out in the input order."""
    out = np.zeros((len(gold), lay.width))
    by_aspect: dict[str, list[int]] = {}
    for i, a in enumerate(aspects):
        by_aspect.setdefault(a, []).append(i)
    fill = {"single": _single, "multi": _multi, "dimensions": _dimensions}[lay.kind]
    for aspect, rows in by_aspect.items():
        kind = lay.kinds[aspect]
        start, _ = lay.blocks[aspect]
        idx = np.asarray(rows)
        g = [gold[i] for i in rows]
        p = [predicted[i] if kind.valid(as_value(kind, predicted[i])) else None for i in rows]
        fill(lay, out, idx, kind, start, g, p)
    return out


def as_value(kind: LabelKind, value: Any) -> Any:
    """JSON gives lists where a kind may want a tuple (dimensions)."""
    if kind.kind == "dimensions" and isinstance(value, list):
        return tuple(value)
    return value


def _single(lay, out, idx, kind, start, gold, pred) -> None:
    g = np.asarray(gold, dtype=int)
    p = np.asarray([-1 if v is None else v for v in pred], dtype=int)
    valid = p >= 0
    right = valid & (p == g)
    out[idx, lay.col("labelled")] = 1
    out[idx, lay.col("correct")] = right
    out[idx, lay.col("invalid")] = ~valid
    sup, prd, tp = (lay.block(n).start + start for n in ("support", "predicted", "tp"))
    out[idx, sup + g] = 1
    out[idx[valid], prd + p[valid]] = 1
    out[idx[right], tp + g[right]] = 1


def _presence(gold, pred, n: int, levels: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gold values, scored predicted values (the complement of gold presence where invalid,
    at level -1) and the invalid mask, as (rows, n) int arrays."""
    g = np.asarray(gold, dtype=int).reshape(len(gold), n)
    invalid = np.asarray([v is None for v in pred])
    p = np.asarray([[0] * n if v is None else list(v) for v in pred], dtype=int).reshape(g.shape)
    if invalid.any():
        complement = (g[invalid] == 0).astype(int)
        p[invalid] = -complement if levels else complement
    return g, p, invalid


def _multi(lay, out, idx, kind, start, gold, pred) -> None:
    n = kind.n
    g, p, invalid = _presence(gold, pred, n, levels=False)
    _common_sets(lay, out, idx, start, g > 0, p > 0, invalid)
    out[idx, lay.col("correct")] = (g == p).all(axis=1) & ~invalid
    out[idx, lay.col("hamming")] = (g != p).sum(axis=1) / n


def _dimensions(lay, out, idx, kind, start, gold, pred) -> None:
    n = kind.n
    g, p, invalid = _presence(gold, pred, n, levels=True)
    _common_sets(lay, out, idx, start, g > 0, p != 0, invalid)
    agree = (g == p).sum(axis=1)
    out[idx, lay.col("correct")] = (agree == n) & ~invalid
    out[idx, lay.col("cells")] = n
    out[idx, lay.col("level_agree")] = agree


def _common_sets(lay, out, idx, start, g, p, invalid) -> None:
    """labelled, invalid, Jaccard and the support / predicted / tp blocks of presence sets."""
    n = g.shape[1]
    out[idx, lay.col("labelled")] = 1
    out[idx, lay.col("invalid")] = invalid
    inter, union = (g & p).sum(axis=1), (g | p).sum(axis=1)
    out[idx, lay.col("jaccard")] = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    for name, values in (("support", g), ("predicted", p), ("tp", g & p)):
        first = lay.block(name).start + start
        out[idx[:, None], first + np.arange(n)] = values


# ----------------------------------------------------------------------------- metrics


def support_mask(lay: Layout, totals: np.ndarray) -> np.ndarray:
    """The classes with gold support in ``totals`` (the full set's column sums)."""
    return np.asarray(totals)[..., lay.block("support")] > 0


def metrics(
    lay: Layout, totals: np.ndarray, mask: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every metric of the kind, and the per-class precision/recall/F1/support, from summed
    counts: ``totals`` is one row of sums (shape ``(width,)``) or one per resample
    (``(B, width)``); values are arrays of ``B`` (``(B, K)`` per class). NaN where undefined
    (no labelled example; a class outside ``mask``)."""
    t = np.atleast_2d(np.asarray(totals, dtype=float))
    s = {name: t[:, lay.col(name)] for name in lay.scalars}
    sup, prd, tp = (t[:, lay.block(n)] for n in ("support", "predicted", "tp"))
    m = np.asarray(mask, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        labelled = np.where(s["labelled"] > 0, s["labelled"], np.nan)
        precision = _div(tp, prd)
        recall = _div(tp, sup)
        f1 = _div(2 * tp, sup + prd)
        out = {"accuracy": s["correct"] / labelled}
        out |= _averages(precision, recall, f1, sup, prd, tp, m)
        if lay.kind == "multi":
            out["hamming_loss"] = s["hamming"] / labelled
            out["jaccard"] = s["jaccard"] / labelled
        if lay.kind == "dimensions":
            cells = np.where(s["cells"] > 0, s["cells"], np.nan)
            tps, fps, fns = tp.sum(1), (prd - tp).sum(1), (sup - tp).sum(1)
            tns = s["cells"] - tps - fps - fns
            out["dimension_accuracy"] = (tps + tns) / cells
            out["intensity_accuracy"] = s["level_agree"] / cells
            out["fn_rate"] = _nan_div(fns, tps + fns)
            out["fp_rate"] = _nan_div(fps, fps + tns)
            out["jaccard"] = s["jaccard"] / labelled
        undefined = np.isnan(labelled)
        out = {k: np.where(undefined, np.nan, out[k]) for k in METRICS[lay.kind]}
    hide = ~m
    per_class = {
        "precision": np.where(hide, np.nan, precision),
        "recall": np.where(hide, np.nan, recall),
        "f1": np.where(hide, np.nan, f1),
        "support": sup,
    }
    return out, per_class


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (scikit-learn's ``zero_division=0``)."""
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _nan_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _averages(precision, recall, f1, sup, prd, tp, m) -> dict[str, np.ndarray]:
    """Macro, micro and weighted P/R/F1 over the classes of ``m``."""
    out = {}
    k = m.sum()
    if k == 0:
        nan = np.full(len(sup), np.nan)
        return {name: nan for name in AVERAGED}
    weights = sup[:, m]
    total = weights.sum(axis=1)
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"macro_{name}"] = values[:, m].mean(axis=1)
        out[f"weighted_{name}"] = _div((values[:, m] * weights).sum(axis=1), total)
    tps, prds, sups = tp[:, m].sum(1), prd[:, m].sum(1), sup[:, m].sum(1)
    out["micro_precision"] = _div(tps, prds)
    out["micro_recall"] = _div(tps, sups)
    out["micro_f1"] = _div(2 * tps, prds + sups)
    return out


# ----------------------------------------------------------------------------- confusion


def confusion(kind: LabelKind, gold: Sequence[Any], predicted: Sequence[Any]) -> dict[str, Any]:
    """The confusion table of one aspect's labelled examples.

    ``single``: gold class (rows) × predicted class, plus an ``invalid`` column; ``multi``:
    per category ``{tp, fp, fn, tn}`` (invalid answers as their complement); ``dimensions``:
    gold level × predicted level over every (example, dimension) cell, ``not present`` a
    level, plus an ``invalid`` column.

    >>> from llmscisci_cfg.task.kinds import SingleLabel
    >>> confusion(SingleLabel(("x", "y")), [0, 1, 1], [0, 0, None])["matrix"]
    [[1, 0, 0], [1, 0, 1]]
    """
    if kind.kind == "single":
        labels = [*kind.categories]
        matrix = np.zeros((kind.n, kind.n + 1), dtype=int)
        for g, p in zip(gold, predicted, strict=True):
            matrix[g, p if kind.valid(p) else kind.n] += 1
        return {"rows": labels, "columns": [*labels, "invalid"], "matrix": matrix.tolist()}
    if kind.kind == "multi":
        pred = [p if kind.valid(as_value(kind, p)) else None for p in predicted]
        g, p, _ = _presence(gold, pred, kind.n, levels=False)
        return {
            c: {
                "tp": int(((g[:, i] == 1) & (p[:, i] == 1)).sum()),
                "fp": int(((g[:, i] == 0) & (p[:, i] == 1)).sum()),
                "fn": int(((g[:, i] == 1) & (p[:, i] == 0)).sum()),
                "tn": int(((g[:, i] == 0) & (p[:, i] == 0)).sum()),
            }
            for i, c in enumerate(kind.categories)
        }
    levels = ["not present", *kind.levels]
    matrix = np.zeros((len(levels), len(levels) + 1), dtype=int)
    for g, p in zip(gold, predicted, strict=True):
        valid = kind.valid(as_value(kind, p))
        for i, level in enumerate(g):
            matrix[level, p[i] if valid else len(levels)] += 1
    return {"rows": levels, "columns": [*levels, "invalid"], "matrix": matrix.tolist()}
