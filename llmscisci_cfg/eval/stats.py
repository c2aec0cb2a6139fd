"""Uncertainty for eval reports: bootstrap intervals, paired comparisons, degenerate answers.

**The resampling unit is the document.** A document (the ``doc`` of a `Scored`, the ``id`` of
a prediction) contributes one example per aspect, and its aspects are not independent, so a
resample draws documents with replacement and each drawn document brings all its examples, of
every model. Every model is resampled with the same draws, so differences are paired.

**Fast.** Each model and part (``overall`` or an aspect) becomes a per-document matrix of sums
(examples, format-valid, label-valid, labelled, Hamming, exact, reward, and TP/FP/FN per
category); a resample is a row of document counts ``w``, and every headline metric follows
from ``w @ matrix``. Micro and macro F1 are recomputed from the summed counts of each resample
with the rules of `metrics` (0/0 is 1.0 for an error-free category; a resample's macro F1
averages the categories of the aspects it has labelled examples of, as `metrics` would).

**Intervals** are percentile intervals (2.5th and 97.5th percentiles of the resampled values,
numpy's linear interpolation); resamples where a metric is undefined (no labelled example of
that part) are left out. Endpoints within float noise (1e-12) of the point estimate are set
to it, so an interval always holds its point estimate when every resample agrees.

**Paired tests** on the examples both models answered: McNemar's exact test on exact match
(per example: b = policy right and reference wrong, c = the reverse; two-sided binomial
p-value) and a sign-flip permutation test on Hamming loss (per document: the difference of the
summed Hamming losses; all 2^D sign vectors when that is at most ``permutations``, else
``permutations`` random ones with p = (1 + hits) / (1 + permutations)).

**Degenerate answers**: among a model's valid answers, the shares that are all zeros, all
ones, or the model's most frequent answer in that aspect (``constant``: 1.0 when it gives one
answer to everything). A policy is flagged when its all-zero or constant share exceeds a
reference's by more than ``DEGENERATE_RISE``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmscisci_cfg.eval.metrics import Scored, effective_prediction, overall_metrics

HEADLINE = (
    "format_valid_rate",
    "label_valid_rate",
    "hamming_loss",
    "exact_match",
    "micro_f1",
    "macro_f1",
    "mean_reward",
)
RESAMPLES = 1000
PERMUTATIONS = 10_000
LEVEL = 0.95
DEGENERATE_RISE = 0.05  # a rise of more than 5 points of share is flagged
_SNAP = 1e-12

# the scalar columns of a document table; then one "labelled" column per aspect, TP, FP, FN
N, FV, LV, LAB, HAM, EXACT, RN, RSUM = range(8)
_SCALARS = 8


@dataclass(frozen=True)
class Table:
    """Per-document sums of one model on one part: ``values[document, column]``."""

    values: np.ndarray  # (documents, columns)
    aspects: list[str]  # the blocks of category columns, in order
    widths: list[int]  # categories per block

    @property
    def n_categories(self) -> int:
        return sum(self.widths)

    def columns(self, start: int) -> slice:
        """TP (start 0), FP (1) or FN (2) columns."""
        first = _SCALARS + len(self.aspects) + start * self.n_categories
        return slice(first, first + self.n_categories)


def doc_table(
    rows: Iterable[Scored], docs: dict[str, int], categories: dict[str, list[str]]
) -> Table:
    """Sum ``rows`` per document (``docs`` maps document → row index of the table)."""
    aspects = list(categories)
    widths = [len(categories[a]) for a in aspects]
    offset = dict(zip(aspects, np.cumsum([0, *widths[:-1]]).tolist(), strict=True))
    table = Table(np.zeros((len(docs), _SCALARS + len(aspects) + 3 * sum(widths))), aspects, widths)
    tp, fp, fn = (table.columns(k).start for k in range(3))
    v = table.values
    for r in rows:
        d = docs[r.doc]
        v[d, N] += 1
        v[d, FV] += r.format_valid
        v[d, LV] += r.predicted is not None
        if r.reward is not None:
            v[d, RN] += 1
            v[d, RSUM] += r.reward
        if r.gold is None:
            continue
        pred = effective_prediction(r.gold, r.predicted)
        v[d, LAB] += 1
        v[d, _SCALARS + aspects.index(r.aspect)] += 1
        v[d, HAM] += sum(g != p for g, p in zip(r.gold, pred, strict=True)) / len(r.gold)
        v[d, EXACT] += pred == list(r.gold)
        for i, (g, p) in enumerate(zip(r.gold, pred, strict=True), offset[r.aspect]):
            v[d, tp + i] += g == 1 and p == 1
            v[d, fp + i] += g == 0 and p == 1
            v[d, fn + i] += g == 1 and p == 0
    return table


def headline(totals: np.ndarray, table: Table) -> dict[str, np.ndarray]:
    """Every headline metric of each row of ``totals`` (resamples × columns), NaN if undefined.

    >>> t = doc_table([Scored("e", [1, 0], [1, 0], True, doc="d")], {"d": 0}, {"e": ["a", "b"]})
    >>> {k: float(v[0]) for k, v in headline(t.values, t).items()}["macro_f1"]
    1.0
    """
    t = np.atleast_2d(totals)
    with np.errstate(divide="ignore", invalid="ignore"):
        tp, fp, fn = (t[:, table.columns(k)] for k in range(3))
        den = 2 * tp + fp + fn
        f1 = np.where(den == 0, 1.0, 2 * tp / np.where(den == 0, 1, den))  # den 0 ⇔ error-free
        micro_den = den.sum(axis=1)
        micro = np.where(micro_den == 0, 1.0, 2 * tp.sum(axis=1) / micro_den)
        # a category counts in macro F1 when its aspect has labelled examples in the resample
        present = np.repeat(
            t[:, _SCALARS : _SCALARS + len(table.aspects)] > 0, table.widths, axis=1
        )
        macro = (f1 * present).sum(axis=1) / present.sum(axis=1)
        labelled = t[:, LAB]
        out = {
            "format_valid_rate": t[:, FV] / t[:, N],
            "label_valid_rate": t[:, LV] / t[:, N],
            "hamming_loss": t[:, HAM] / labelled,
            "exact_match": t[:, EXACT] / labelled,
            "micro_f1": np.where(labelled > 0, micro, np.nan),
            "macro_f1": np.where(labelled > 0, macro, np.nan),
            "mean_reward": t[:, RSUM] / t[:, RN],
        }
    return {k: np.where(np.isfinite(v), v, np.nan) for k, v in out.items()}


def resample_weights(n_docs: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``resamples`` × ``n_docs``: how often each document is drawn in each resample."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_docs, size=(resamples, n_docs))
    flat = drawn + n_docs * np.arange(resamples)[:, None]
    counts = np.bincount(flat.ravel(), minlength=resamples * n_docs)
    return counts.reshape(resamples, n_docs).astype(float)


def interval(values: np.ndarray, point: float | None, level: float = LEVEL) -> list[float] | None:
    """Percentile interval of the defined ``values``; None when none is (or ``point`` is None)."""
    values = values[~np.isnan(values)]
    if point is None or values.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = (float(x) for x in np.percentile(values, [tail, 100 - tail]))
    return [point if abs(lo - point) < _SNAP else lo, point if abs(hi - point) < _SNAP else hi]


# ----------------------------------------------------------------------------- intervals


def documents(rows: Iterable[Scored]) -> dict[str, int]:
    """Document → index, in first-seen order."""
    out: dict[str, int] = {}
    for r in rows:
        out.setdefault(r.doc, len(out))
    return out


def _parts(rows: list[Scored], categories: dict[str, list[str]]) -> dict[str, tuple]:
    """``{"overall" | aspect: (rows, categories of the part)}`` for the parts ``rows`` cover."""
    out = {"overall": (rows, categories)}
    for aspect, names in categories.items():
        mine = [r for r in rows if r.aspect == aspect]
        if mine:
            out[aspect] = (mine, {aspect: names})
    return out


def intervals(
    rows_by_model: dict[str, list[Scored]],
    categories: dict[str, list[str]],
    points: dict[str, dict[str, dict[str, Any]]],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, list[float] | None]]]:
    """``{model: {part: {metric: [lo, hi] | None}}}``; ``points`` is `metrics.report`'s output,
    whose point estimates the intervals are reported around."""
    docs = documents(r for rows in rows_by_model.values() for r in rows)
    weights = resample_weights(len(docs), resamples, seed)
    out: dict[str, dict[str, dict[str, list[float] | None]]] = {}
    for model, rows in rows_by_model.items():
        out[model] = {}
        for part, (mine, cats) in _parts(rows, categories).items():
            table = doc_table(mine, docs, cats)
            values = headline(weights @ table.values, table)
            out[model][part] = {k: interval(values[k], points[model][part][k]) for k in HEADLINE}
    return out


# ----------------------------------------------------------------------------- paired


def mcnemar_exact(b: int, c: int) -> dict[str, float | int]:
    """McNemar's exact test from the discordant counts (statsmodels: min(b, c), binomial p)."""
    from statsmodels.stats.contingency_tables import mcnemar

    result = mcnemar([[0, b], [c, 0]], exact=True)
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue), "b": b, "c": c}


def sign_flip_pvalue(diffs: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of ``sum(diffs)`` under random sign flips of the per-document
    differences; exact (every sign vector) when 2^D ≤ ``permutations``.

    >>> sign_flip_pvalue(np.zeros(5)), sign_flip_pvalue(np.ones(3))
    (1.0, 0.25)
    """
    d = np.asarray(diffs, dtype=float)
    observed = abs(d.sum()) - 1e-9 * max(1.0, float(np.abs(d).sum()))
    if d.size <= 20 and 2**d.size <= permutations:
        signs = 1 - 2 * ((np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1)
        return float(np.mean(np.abs(signs @ d) >= observed))
    rng = np.random.default_rng((seed, 1))  # a stream apart from the bootstrap's
    hits, left = 0, permutations
    while left:  # chunks keep memory flat on large evals
        k = min(left, 1000)
        signs = rng.integers(0, 2, size=(k, d.size)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed))
        left -= k
    return (1 + hits) / (1 + permutations)


def _shared(a: list[Scored], b: list[Scored]) -> tuple[list[Scored], list[Scored]]:
    """The examples (document, aspect) both lists hold, in ``a``'s order."""
    keys = {(r.doc, r.aspect) for r in a} & {(r.doc, r.aspect) for r in b}
    of_b = {(r.doc, r.aspect): r for r in b}
    mine = [r for r in a if (r.doc, r.aspect) in keys]
    return mine, [of_b[(r.doc, r.aspect)] for r in mine]


def compare(
    policy: list[Scored],
    reference: list[Scored],
    categories: dict[str, list[str]],
    resamples: int = RESAMPLES,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> dict[str, Any]:
    """Policy − reference on the examples both answered: each headline metric's difference
    with its bootstrap interval (the same resamples for both), McNemar on exact match, and the
    sign-flip permutation test on Hamming loss."""
    mine, theirs = _shared(policy, reference)
    if not mine:
        raise ValueError("the two models share no example to compare")
    docs = documents(mine)
    weights = resample_weights(len(docs), resamples, seed)
    tables = [doc_table(rows, docs, categories) for rows in (mine, theirs)]
    a, b = (headline(weights @ t.values, t) for t in tables)
    pa, pb = (overall_metrics(rows, categories).as_dict() for rows in (mine, theirs))
    metric = {}
    for k in HEADLINE:
        d = None if pa[k] is None or pb[k] is None else pa[k] - pb[k]
        metric[k] = {"difference": d, "interval": interval(a[k] - b[k], d)}
    right = [
        (p.predicted == p.gold, r.predicted == r.gold)
        for p, r in zip(mine, theirs, strict=True)
        if p.gold is not None
    ]
    ham = tables[0].values[:, HAM] - tables[1].values[:, HAM]
    return {
        "examples": len(mine),
        "documents": len(docs),
        "metric": metric,
        "mcnemar_exact_match": mcnemar_exact(
            sum(p and not r for p, r in right), sum(r and not p for p, r in right)
        ),
        "permutation_hamming": {
            "p_value": sign_flip_pvalue(ham, permutations, seed),
            "permutations": min(permutations, 2 ** len(docs)),
            "exact": 2 ** len(docs) <= permutations and len(docs) <= 20,
        },
    }


# ----------------------------------------------------------------------------- degenerate


def degenerate(answers: Iterable[tuple[str, list[int] | None]]) -> dict[str, Any]:
    """Shares of the valid answers (aspect, vector) that are all zeros, all ones, or their
    aspect's most frequent answer; None without a valid answer.

    >>> degenerate([("e", [0, 0]), ("e", [0, 0]), ("e", [1, 1]), ("d", [1, 0]), ("e", None)])
    {'answers': 4, 'all_zero': 0.5, 'all_one': 0.25, 'constant': 0.75}
    """
    valid = [(a, tuple(v)) for a, v in answers if v is not None]
    if not valid:
        return {"answers": 0, "all_zero": None, "all_one": None, "constant": None}
    by_aspect: dict[str, Counter] = {}
    for a, v in valid:
        by_aspect.setdefault(a, Counter())[v] += 1
    n = len(valid)
    return {
        "answers": n,
        "all_zero": sum(not any(v) for _, v in valid) / n,
        "all_one": sum(all(v) for _, v in valid) / n,
        "constant": sum(c.most_common(1)[0][1] for c in by_aspect.values()) / n,
    }


def degenerate_flags(
    policy: dict[str, Any], reference: dict[str, Any], min_rise: float = DEGENERATE_RISE
) -> list[str]:
    """The shares (``all_zero``, ``constant``) where the policy exceeds the reference by more
    than ``min_rise``."""
    return [
        k
        for k in ("all_zero", "constant")
        if policy[k] is not None
        and reference[k] is not None
        and policy[k] - reference[k] > min_rise
    ]
