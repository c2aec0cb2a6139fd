"""Uncertainty: bootstrap intervals, paired comparisons, degenerate answers.

**The resampling unit** is the document in ``eval`` (a document brings one example per aspect,
and they are not independent) and the row in ``score``. A resample draws units with
replacement; each drawn unit brings all its examples, of every model at once, so differences
between models are paired.

**Fast.** Every statistic is a function of summed counts (`counts`, and a few columns more
for validity rates and rewards): each unit's counts are summed once into a matrix, a
resample is a row of draw counts ``w`` and its sums are ``w @ matrix``; resamples go in
chunks, so 1,000 resamples of 100,000 rows stay in a few hundred MB. The point estimate is the
same function of the plain sums, so points and resamples follow one convention; the set of
classes a macro average runs over is fixed from the full set and kept by every resample.

**Intervals** are BCa (bias-corrected and accelerated, Efron 1987) by default: the
percentiles of the resampled values at levels moved by the bias ``z0`` (the share of
resamples below the point estimate, ties counting half) and the acceleration ``a`` (from the
leave-one-unit-out jackknife). The coverage study in ``bench/bench_coverage.py`` chose it: the
plain percentile interval covers too rarely for macro-F1 at small sizes (bench/RESULTS.md).
``method="percentile"`` gives the 2.5th and 97.5th percentiles (numpy's linear
interpolation). BCa falls back to the percentile interval where it is undefined (every
resample on one side of the point). Resamples where a metric is undefined are left out;
endpoints within float noise (1e-12) of the point are set to it.

**Paired tests** on the examples both models answered: McNemar's exact test on whether each
example is entirely right (b = the first alone right, c = the second alone right; two-sided
binomial p-value, statsmodels), and for partial-credit kinds a sign-flip permutation test over
units on the per-unit sum of the loss (multi: Hamming loss; dimensions: the share of
dimensions at a wrong level): all 2^D sign vectors when that is at most ``permutations``, else
``permutations`` random ones with p = (1 + hits) / (1 + permutations).

**Degenerate answers**: among a model's valid answers, the share that is its most frequent
answer in that aspect (``constant``), and (multi, dimensions) the shares naming no category
(``all_zero``) or every one (``all_one``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from llmscisci_cfg.eval import counts
from llmscisci_cfg.eval.metrics import Part, Scored

RESAMPLES = 1000
PERMUTATIONS = 10_000
LEVEL = 0.95
METHODS = ("bca", "percentile")
DEFAULT_METHOD = "bca"
DEGENERATE_RISE = 0.05  # a rise of more than 5 points of share is flagged
#: Cells of draw counts held at once (resamples × units): about 40 MB of float64.
CHUNK_CELLS = 5_000_000
_SNAP = 1e-12

# the columns of the per-unit table of every example (labelled or not)
COMMON = ("n", "format_valid", "label_valid", "reward_n", "reward_sum")

#: A statistic: unit sums in (one matrix per table, ``(b, columns)``), named values out.
Statistic = Callable[[list[np.ndarray]], dict[Any, np.ndarray]]


def headline(kind: str) -> tuple[str, ...]:
    """The metrics of a part with intervals, in report order."""
    return ("format_valid_rate", "label_valid_rate", *counts.METRICS[kind], "mean_reward")


# ----------------------------------------------------------------------------- units


def units(keys: Iterable[str]) -> dict[str, int]:
    """Unit (document or row id) → index, in first-seen order."""
    out: dict[str, int] = {}
    for k in keys:
        out.setdefault(k, len(out))
    return out


def per_unit(rows_table: np.ndarray, unit_of_row: Sequence[int], n_units: int) -> np.ndarray:
    """Sum the rows of ``rows_table`` by unit: ``(n_units, columns)``."""
    out = np.zeros((n_units, rows_table.shape[1]))
    if len(unit_of_row):
        np.add.at(out, np.asarray(unit_of_row, dtype=int), rows_table)
    return out


def common_table(part: Part) -> np.ndarray:
    """`COMMON` counts of each example (validity and rewards: every example, labelled or not)."""
    rows = part.rows
    out = np.zeros((len(rows), len(COMMON)))
    out[:, 0] = 1
    out[:, 1] = [r.format_valid for r in rows]
    out[:, 2] = part.valid
    out[:, 3] = [r.reward is not None for r in rows]
    out[:, 4] = [r.reward or 0.0 for r in rows]
    return out


@dataclass(frozen=True)
class PartTables:
    """One model's part as unit sums: the common columns and the label counts."""

    part: Part
    common: np.ndarray  # (units, len(COMMON))
    labels: np.ndarray  # (units, layout.width)
    mask: np.ndarray  # the classes with gold support in the whole set

    @classmethod
    def build(cls, part: Part, unit_index: Mapping[str, int], mask=None) -> PartTables:
        n = len(unit_index)
        common = per_unit(common_table(part), [unit_index[r.doc] for r in part.rows], n)
        labelled = part.labelled
        labels = per_unit(part.count_table, [unit_index[r.doc] for r in labelled], n)
        if mask is None:
            mask = counts.support_mask(part.layout, labels.sum(axis=0))
        return cls(part, common, labels, mask)

    @property
    def tables(self) -> list[np.ndarray]:
        return [self.common, self.labels]

    def values(self, sums: list[np.ndarray]) -> dict[Any, np.ndarray]:
        """Every headline metric and ``(metric, class)`` per-class value, from sums."""
        c, lab = sums
        lay = self.part.layout
        with np.errstate(divide="ignore", invalid="ignore"):
            out: dict[Any, np.ndarray] = {
                "format_valid_rate": c[:, 1] / c[:, 0],
                "label_valid_rate": c[:, 2] / c[:, 0],
                "mean_reward": c[:, 4] / c[:, 3],
            }
        values, per_class = counts.metrics(lay, lab, self.mask)
        out |= values
        for m in counts.PER_CLASS:
            for i, key in enumerate(lay.keys):
                out[(m, key)] = per_class[m][:, i]
        return {k: np.where(np.isfinite(v), v, np.nan) for k, v in out.items()}


# ----------------------------------------------------------------------------- bootstrap


def resample_weights(
    n_units: int, resamples: int = RESAMPLES, seed: int = 0, chunk: int | None = None
) -> Iterator[np.ndarray]:
    """Chunks of the ``resamples`` × ``n_units`` draw counts (how often each unit is drawn
    in each resample), from one seeded stream: the same seed gives the same resamples
    whatever the chunk size."""
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, min(resamples, CHUNK_CELLS // max(n_units, 1)))
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        drawn = rng.integers(0, n_units, size=(k, n_units), dtype=np.int32)
        out = np.empty((k, n_units))
        for i in range(k):
            out[i] = np.bincount(drawn[i], minlength=n_units)
        yield out
        done += k


@dataclass(frozen=True)
class Bootstrap:
    """A statistic's point estimate, resampled values and jackknife values."""

    point: dict[Any, float | None]
    resampled: dict[Any, np.ndarray]  # (resamples,)
    jackknife: dict[Any, np.ndarray]  # (units,)

    def interval(self, key: Any, method: str = DEFAULT_METHOD, level: float = LEVEL):
        return interval(
            self.resampled[key], self.point[key], method, self.jackknife.get(key), level
        )


def bootstrap(
    tables: list[np.ndarray],
    statistic: Statistic,
    resamples: int = RESAMPLES,
    seed: int = 0,
    jackknife: bool = True,
) -> Bootstrap:
    """Resample the units (rows of every table) together; ``statistic`` maps unit sums to
    values. The jackknife leaves out one unit at a time (for BCa)."""
    n_units = tables[0].shape[0]
    totals = [t.sum(axis=0, keepdims=True) for t in tables]
    point = {k: _number(v[0]) for k, v in statistic(totals).items()}
    parts: dict[Any, list[np.ndarray]] = {}
    for w in resample_weights(n_units, resamples, seed):
        for k, v in statistic([w @ t for t in tables]).items():
            parts.setdefault(k, []).append(v)
    resampled = {k: np.concatenate(v) for k, v in parts.items()}
    jack = statistic([tot - t for tot, t in zip(totals, tables, strict=True)]) if jackknife else {}
    return Bootstrap(point, resampled, jack)


def _number(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def interval(
    values: np.ndarray,
    point: float | None,
    method: str = DEFAULT_METHOD,
    jackknife: np.ndarray | None = None,
    level: float = LEVEL,
) -> list[float] | None:
    """The ``level`` interval of the defined ``values`` around ``point`` (None when none is
    defined, or ``point`` is None); BCa needs the ``jackknife`` values."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if point is None or v.size == 0:
        return None
    tail = (1 - level) / 2
    quantiles = [tail, 1 - tail]
    if method == "bca":
        quantiles = _bca_levels(v, point, jackknife, quantiles) or quantiles
    elif method != "percentile":
        raise ValueError(f"unknown interval method {method!r}; known: {', '.join(METHODS)}")
    lo, hi = (float(x) for x in np.percentile(v, [100 * q for q in quantiles]))
    return [point if abs(lo - point) < _SNAP else lo, point if abs(hi - point) < _SNAP else hi]


def _bca_levels(
    v: np.ndarray, point: float, jackknife: np.ndarray | None, quantiles: list[float]
) -> list[float] | None:
    """BCa's adjusted quantiles, or None where BCa is undefined (then: percentile)."""
    below = (np.sum(v < point) + 0.5 * np.sum(v == point)) / v.size
    if not 0 < below < 1 or jackknife is None:
        return None
    normal = NormalDist()
    z0 = normal.inv_cdf(below)
    j = np.asarray(jackknife, dtype=float)
    j = j[~np.isnan(j)]
    d = j.mean() - j if j.size else j
    den = 6.0 * float(np.sum(d**2)) ** 1.5
    a = float(np.sum(d**3)) / den if den > 0 else 0.0
    out = []
    for q in quantiles:
        z = normal.inv_cdf(q)
        shifted = z0 + (z0 + z) / (1 - a * (z0 + z))
        if not math.isfinite(shifted):
            return None
        out.append(min(1.0, max(0.0, normal.cdf(shifted))))
    return out


def intervals_of(
    boot: Bootstrap, keys: Iterable[Any], method: str = DEFAULT_METHOD, level: float = LEVEL
) -> dict[Any, list[float] | None]:
    return {k: boot.interval(k, method, level) for k in keys}


# ----------------------------------------------------------------------------- eval parts


def bootstrap_parts(
    tables: Mapping[Any, PartTables], resamples: int = RESAMPLES, seed: int = 0
) -> dict[Any, Bootstrap]:
    """One bootstrap of several parts over the same units (one set of draws for all, so
    models and columns are resampled together): ``{name: Bootstrap}``."""
    names = list(tables)

    def statistic(sums: list[np.ndarray]) -> dict[Any, np.ndarray]:
        out = {}
        for j, name in enumerate(names):
            for k, v in tables[name].values(sums[2 * j : 2 * j + 2]).items():
                out[(name, k)] = v
        return out

    flat = [t for name in names for t in tables[name].tables]
    boot = bootstrap(flat, statistic, resamples, seed)
    return {
        name: Bootstrap(
            {k: v for (n, k), v in boot.point.items() if n == name},
            {k: v for (n, k), v in boot.resampled.items() if n == name},
            {k: v for (n, k), v in boot.jackknife.items() if n == name},
        )
        for name in names
    }


def part_intervals(boot: Bootstrap, part: Part, method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """``{"intervals": {metric: [lo, hi]}, "per_class_intervals": {class: {metric: [lo,
    hi]}}}`` of one part's bootstrap."""
    return {
        "intervals": intervals_of(boot, headline(part.layout.kind), method),
        "per_class_intervals": {
            key: {m: boot.interval((m, key), method) for m in counts.PER_CLASS}
            for key in part.layout.keys
        },
    }


def model_intervals(
    parts_by_model: Mapping[str, Mapping[str, Part]],
    unit_index: Mapping[str, int],
    resamples: int = RESAMPLES,
    seed: int = 0,
    method: str = DEFAULT_METHOD,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {part: part_intervals}}``: every model and part resampled together."""
    tables = {
        (model, name): PartTables.build(part, unit_index)
        for model, found in parts_by_model.items()
        for name, part in found.items()
    }
    boots = bootstrap_parts(tables, resamples, seed)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (model, name), boot in boots.items():
        out.setdefault(model, {})[name] = part_intervals(boot, tables[(model, name)].part, method)
    return out


# ----------------------------------------------------------------------------- paired


def mcnemar_exact(b: int, c: int) -> dict[str, float | int]:
    """McNemar's exact test from the discordant counts: statistic min(b, c), two-sided
    p = min(1, 2 · P(Binomial(b + c, 1/2) ≤ min(b, c))), as statsmodels' ``mcnemar(exact=True)``
    (scipy's binomial CDF without importing statsmodels, which costs seconds)."""
    from scipy.special import bdtr

    n = b + c
    p = 1.0 if n == 0 else min(1.0, 2.0 * float(bdtr(min(b, c), n, 0.5)))
    return {"statistic": float(min(b, c)), "p_value": p, "b": b, "c": c}


def sign_flip_pvalue(diffs: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of ``sum(diffs)`` under random sign flips of the per-unit
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
    while left:  # chunks keep memory flat on large sets
        k = min(left, max(1, 10_000_000 // max(d.size, 1)))
        signs = rng.integers(0, 2, size=(k, d.size)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed))
        left -= k
    return (1 + hits) / (1 + permutations)


def row_loss(lay: counts.Layout, table: np.ndarray) -> np.ndarray | None:
    """Each row's partial-credit loss for the permutation test, or None (single: McNemar
    says it all): multi the Hamming loss, dimensions the share of dimensions at a wrong
    level."""
    if lay.kind == "multi":
        return table[:, lay.col("hamming")]
    if lay.kind == "dimensions":
        cells = table[:, lay.col("cells")]
        return np.where(cells > 0, 1 - table[:, lay.col("level_agree")] / np.maximum(cells, 1), 0)
    return None


def _shared(a: Sequence[Scored], b: Sequence[Scored]) -> tuple[list[Scored], list[Scored]]:
    """The examples (document, aspect) both lists hold, in ``a``'s order."""
    of_b = {(r.doc, r.aspect): r for r in b}
    mine = [r for r in a if (r.doc, r.aspect) in of_b]
    return mine, [of_b[(r.doc, r.aspect)] for r in mine]


def compare(
    policy: Sequence[Scored],
    reference: Sequence[Scored],
    make_part: Callable[[list[Scored]], Part],
    resamples: int = RESAMPLES,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
    method: str = DEFAULT_METHOD,
) -> dict[str, Any]:
    """Policy − reference on the examples both answered (``make_part`` builds the pooled part
    of some rows): each headline metric's difference with its paired bootstrap interval,
    McNemar on entirely-right examples, the permutation test on the kind's loss."""
    mine, theirs = _shared(policy, reference)
    if not mine:
        raise ValueError("the two models share no example to compare")
    index = units(r.doc for r in mine)
    a = PartTables.build(make_part(mine), index)
    b = PartTables.build(make_part(theirs), index, mask=a.mask)
    kind = a.part.layout.kind

    def difference(sums: list[np.ndarray]) -> dict[Any, np.ndarray]:
        x, y = a.values(sums[:2]), b.values(sums[2:])
        return {k: x[k] - y[k] for k in headline(kind)}

    boot = bootstrap([*a.tables, *b.tables], difference, resamples, seed)
    metric = {
        k: {"difference": boot.point[k], "interval": boot.interval(k, method)}
        for k in headline(kind)
    }
    out: dict[str, Any] = {"examples": len(mine), "documents": len(index), "metric": metric}
    out |= paired_tests(a.part, b.part, index, permutations, seed)
    return out


def paired_tests(
    a: Part, b: Part, index: Mapping[str, int], permutations: int = PERMUTATIONS, seed: int = 0
) -> dict[str, Any]:
    """McNemar on entirely-right labelled examples; the permutation test where the kind has
    partial credit (``None`` otherwise). ``a`` and ``b`` hold the same examples in order."""
    la = a.labelled
    ta, tb = a.count_table, b.count_table
    col = a.layout.col("correct")
    right_a, right_b = ta[:, col] > 0, tb[:, col] > 0
    out: dict[str, Any] = {
        "mcnemar": mcnemar_exact(int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a)))
    }
    loss_a, loss_b = row_loss(a.layout, ta), row_loss(b.layout, tb)
    if loss_a is None:
        out["permutation"] = None
        return out
    docs = [index[r.doc] for r in la]
    diff = per_unit((loss_a - loss_b)[:, None], docs, len(index))[:, 0]
    n = len(index)
    out["permutation"] = {
        "loss": "hamming_loss" if a.layout.kind == "multi" else "wrong_level_share",
        "p_value": sign_flip_pvalue(diff, permutations, seed),
        "permutations": min(permutations, 2**n) if n <= 60 else permutations,
        "exact": n <= 20 and 2**n <= permutations,
    }
    return out


# ----------------------------------------------------------------------------- degenerate


def degenerate(answers: Iterable[tuple[str, Any]], kind: str) -> dict[str, Any]:
    """Shares of the valid answers (aspect, value) that are their aspect's most frequent
    answer, and (multi, dimensions) that name no category or every one; None without a
    valid answer (or where the kind has no such share).

    >>> degenerate([("e", [0, 0]), ("e", [0, 0]), ("e", [1, 1]), ("d", [1, 0]), ("e", None)], "multi")
    {'answers': 4, 'all_zero': 0.5, 'all_one': 0.25, 'constant': 0.75}
    """
    valid = [(a, v if isinstance(v, int) else tuple(v)) for a, v in answers if v is not None]
    if not valid:
        return {"answers": 0, "all_zero": None, "all_one": None, "constant": None}
    by_aspect: dict[str, Counter] = {}
    for a, v in valid:
        by_aspect.setdefault(a, Counter())[v] += 1
    n = len(valid)
    sets = kind != "single"
    return {
        "answers": n,
        "all_zero": sum(not any(v) for _, v in valid) / n if sets else None,
        "all_one": sum(all(v) for _, v in valid) / n if sets else None,
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
