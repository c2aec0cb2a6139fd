"""Label metrics by answer kind: point estimates of one model's predictions, part by part.

A *part* is one aspect, or ``overall`` (every aspect pooled: per-example means over all
examples, counts summed, classes keyed ``aspect/category``). Each part's label metrics come
from its count table (`counts`): the kind's metrics (`counts.METRICS`), per-class
precision/recall/F1/support, and (per aspect) its confusion table. Beside them, for eval:
the format- and label-valid rates over every example, and the mean rewards.

The conventions (0/0, invalid answers, which classes an average runs over) are those of
`counts`, stated for readers by `rules`; the tests check every number against scikit-learn.

>>> from llmscisci_cfg.task.kinds import SingleLabel
>>> kinds = {"intent": SingleLabel(("background", "method", "result"))}
>>> rows = [Scored("intent", 0, 0, True), Scored("intent", 1, None, False)]
>>> m = report({"policy": rows}, kinds)["policy"]["intent"]
>>> (m["accuracy"], m["invalid"], m["macro_f1"], m["per_class"]["result"]["f1"])
(0.5, 1, 0.5, None)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from llmscisci_cfg.eval import counts
from llmscisci_cfg.task.kinds import LabelKind

OVERALL = "overall"


@dataclass(frozen=True)
class Scored:
    """One example as the metrics see it.

    ``gold`` and ``predicted`` are values of the aspect's answer kind (single: a category
    index; multi: a one-hot list; dimensions: a level per dimension); ``gold`` is None for an
    unlabelled example, ``predicted`` None for an invalid or missing answer.
    ``format_valid`` says whether the completion had the response format; ``doc`` is the
    document (the bootstrap's resampling unit)."""

    aspect: str
    gold: Any
    predicted: Any
    format_valid: bool
    reward: float | None = None
    rewards: dict[str, float] = field(default_factory=dict)
    doc: str = ""


@dataclass(frozen=True)
class Part:
    """The examples of one part and its count-table layout."""

    name: str
    rows: list[Scored]
    layout: counts.Layout

    @cached_property
    def labelled(self) -> list[Scored]:
        return [r for r in self.rows if r.gold is not None]

    @cached_property
    def count_table(self) -> np.ndarray:
        """Counts of the labelled rows, one row each (`counts.table`); computed once."""
        rows = self.labelled
        return counts.table(
            self.layout, [r.aspect for r in rows], [r.gold for r in rows],
            [r.predicted for r in rows],
        )  # fmt: skip

    @cached_property
    def valid(self) -> np.ndarray:
        """Whether each row (labelled or not) has a valid answer."""
        return np.array([_valid(self, r) for r in self.rows], dtype=bool)


def kind_name(kinds: Mapping[str, LabelKind]) -> str:
    """The one answer kind of a task's aspects."""
    found = {k.kind for k in kinds.values()}
    if len(found) != 1:
        raise ValueError(f"the aspects have different answer kinds: {sorted(found)}")
    return next(iter(found))


def parts(rows: Sequence[Scored], kinds: Mapping[str, LabelKind]) -> dict[str, Part]:
    """``overall`` and each aspect ``rows`` have, in task order."""
    unknown = sorted({r.aspect for r in rows} - set(kinds))
    if unknown:
        raise ValueError(f"rows name aspects {unknown} that the task does not have")
    _check_gold(rows, kinds)
    out = {OVERALL: Part(OVERALL, list(rows), counts.layout(kinds))}
    for aspect, kind in kinds.items():
        mine = [r for r in rows if r.aspect == aspect]
        if mine:
            out[aspect] = Part(aspect, mine, counts.layout({aspect: kind}))
    return out


def _check_gold(rows: Iterable[Scored], kinds: Mapping[str, LabelKind]) -> None:
    for r in rows:
        kind = kinds[r.aspect]
        if r.gold is not None and not kind.valid(counts.as_value(kind, r.gold)):
            raise ValueError(f"{r.aspect}: gold {r.gold!r} is not a valid {kind.kind} value")


def part_metrics(part: Part) -> dict[str, Any]:
    """The point estimates of one part (see the module docstring)."""
    rows = part.rows
    if not rows:
        raise ValueError("no examples to score")
    labelled = part.labelled
    lay = part.layout
    totals = part.count_table.sum(axis=0) if labelled else np.zeros(lay.width)
    out: dict[str, Any] = {
        "n": len(rows),
        "n_labelled": len(labelled),
        "invalid": int(totals[lay.col("invalid")]),
        "format_valid_rate": sum(r.format_valid for r in rows) / len(rows),
        "label_valid_rate": float(part.valid.mean()),
    }
    mask = counts.support_mask(lay, totals)
    values, per_class = counts.metrics(lay, totals, mask)
    out |= {k: number(v[0]) for k, v in values.items()}
    out["per_class"] = {
        key: {
            **{m: number(per_class[m][0, i]) for m in counts.PER_CLASS},
            "support": int(totals[lay.block("support")][i]),
            "predicted": int(totals[lay.block("predicted")][i]),
        }
        for i, key in enumerate(lay.keys)
    } if labelled else {}  # fmt: skip
    if part.name != OVERALL and labelled:
        kind = lay.kinds[part.name]
        out["confusion"] = counts.confusion(
            kind, [r.gold for r in labelled], [r.predicted for r in labelled]
        )
    out["mean_reward"], out["mean_rewards"] = _reward_means(rows)
    return out


def _valid(part: Part, r: Scored) -> bool:
    kind = part.layout.kinds[r.aspect]
    return r.predicted is not None and kind.valid(counts.as_value(kind, r.predicted))


def number(x: Any) -> float | None:
    """A metric value for JSON: a float, or None for NaN (undefined)."""
    x = float(x)
    return None if math.isnan(x) else x


def _reward_means(rows: list[Scored]) -> tuple[float | None, dict[str, float]]:
    totals = [r.reward for r in rows if r.reward is not None]
    names = list(dict.fromkeys(name for r in rows for name in r.rewards))
    means = {name: _mean([r.rewards[name] for r in rows if name in r.rewards]) for name in names}
    return (_mean(totals) if totals else None), means


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def model_report(rows: Sequence[Scored], kinds: Mapping[str, LabelKind]) -> dict[str, Any]:
    """``{"overall": …, aspect: …}`` for one model."""
    return {name: part_metrics(part) for name, part in parts(rows, kinds).items()}


def report(
    rows_by_model: Mapping[str, Sequence[Scored]], kinds: Mapping[str, LabelKind]
) -> dict[str, Any]:
    """``{model: {"overall" | aspect: metrics}}``."""
    return {model: model_report(rows, kinds) for model, rows in rows_by_model.items()}


def frequencies(
    rows_by_model: Mapping[str, Sequence[Scored]], kinds: Mapping[str, LabelKind]
) -> dict[str, dict[str, int]]:
    """How often each ``aspect/category`` is named (dimensions: present): in gold (each
    labelled ``(doc, aspect)`` once) and in each model's valid answers.

    >>> from llmscisci_cfg.task.kinds import MultiLabel
    >>> rows = [Scored("e", [1, 0], [1, 1], True, doc="d1"), Scored("e", [1, 1], None, False, doc="d2")]
    >>> frequencies({"policy": rows}, {"e": MultiLabel(("a", "b"))})
    {'gold': {'e/a': 2, 'e/b': 1}, 'policy': {'e/a': 1, 'e/b': 1}}
    """
    keys = [f"{a}/{c}" for a, kind in kinds.items() for c in kind.categories]
    gold_of = {}
    for rows in rows_by_model.values():
        for r in rows:
            if r.gold is not None:
                gold_of.setdefault((r.doc, r.aspect), r.gold)
    out = {"gold": _count(((a, g) for (_, a), g in gold_of.items()), kinds, keys)}
    for model, rows in rows_by_model.items():
        answers = (
            (r.aspect, r.predicted)
            for r in rows
            if r.predicted is not None
            and kinds[r.aspect].valid(counts.as_value(kinds[r.aspect], r.predicted))
        )
        out[model] = _count(answers, kinds, keys)
    return out


def _count(values, kinds: Mapping[str, LabelKind], keys: list[str]) -> dict[str, int]:
    found = dict.fromkeys(keys, 0)
    for aspect, value in values:
        for name, k in kinds[aspect].counts(value).items():
            found[f"{aspect}/{name}"] += k
    return found


# ----------------------------------------------------------------------------- rules

INVALID_RULE = {
    "single": "A missing, invalid or unknown answer counts as wrong and is counted as invalid: "
    "it names no category, so it is a false negative of the gold category and a false "
    "positive of none (in scikit-learn's terms, a label outside `labels=`). It is never "
    "skipped.",
    "multi": "A missing or invalid answer (no `<label>` block holding a valid one-hot list that "
    "meets the task's constraints) counts as wrong in every category: it is scored as the "
    "complement of the gold vector, so its Hamming loss is 1, its Jaccard 0, and it adds a "
    "false positive or a false negative in each category. It is never skipped.",
    "dimensions": "A missing or invalid answer (not a JSON object of known dimensions at known "
    "levels) counts as wrong in every dimension: its presence is scored as the complement "
    "of gold's (each dimension a false positive or a false negative), no level is right, its "
    "Jaccard is 0; the level confusion counts it in an `invalid` column. It is never skipped.",
}
AVERAGE_RULE = (
    "Macro, micro and weighted precision, recall and F1 average over the categories with gold "
    "support in the evaluated examples (scikit-learn's `precision_recall_fscore_support` with "
    "`labels=` those categories and `zero_division=0`: a ratio with a zero denominator is 0). A "
    "category without gold support has no per-category precision, recall or F1 (shown as "
    "–, null in JSON) and is left out of every average; predicting it still counts against "
    "accuracy{extra}. `overall` pools the aspects: categories keyed aspect/category, "
    "per-example means over every example."
)
_AVERAGE_EXTRA = {
    "single": "",
    "multi": ", Hamming loss and Jaccard",
    "dimensions": ", dimension accuracy, the false-positive rate and Jaccard",
}
DEFINITIONS = {
    "single": "Accuracy is the share of examples whose answer is the gold category.",
    "multi": "Accuracy is exact match (every category right; scikit-learn's `accuracy_score` "
    "on multi-label input); Hamming loss the mean share of wrong categories; Jaccard the mean "
    "over examples of |gold ∩ answer| / |gold ∪ answer| (1.0 when both are empty; "
    "scikit-learn's `jaccard_score(average='samples', zero_division=1)`).",
    "dimensions": "Over every (example, dimension) cell: dimension accuracy is the share whose "
    "presence (present or absent) is right; intensity accuracy the share whose level is right, "
    "`not present` counting as a level; the false-negative rate is FN / (TP + FN) and the "
    "false-positive rate FP / (FP + TN) of presence. Per example: Jaccard of the present sets "
    "(1.0 when both are empty), averaged; accuracy is exact match (every dimension at the gold "
    "level). Per dimension: F1 of presence.",
}


def rules(kind: str) -> list[str]:
    """The scoring conventions of ``kind``, for reports."""
    average = AVERAGE_RULE.format(extra=_AVERAGE_EXTRA[kind])
    return [DEFINITIONS[kind], INVALID_RULE[kind], average]
