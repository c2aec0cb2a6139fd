"""Coverage of the bootstrap intervals: how often does the 95% interval hold the truth?

Synthetic populations whose metric values are known exactly (computed from their joint
distribution of gold and answer, not estimated):

- ``single``: three categories with SciCite's shares (0.54, 0.32, 0.14); an answer is right
  with a per-category probability (0.85, 0.75, 0.6), else another category (uniformly), and
  invalid 5% of the time;
- ``multi``: five categories with prevalences (0.5, 0.3, 0.2, 0.1, 0.05), independent; each
  category's answer misses a present category with probability 0.2 and adds an absent one
  with probability 0.1; 5% of the answers are invalid (scored as the complement of gold).

For each population and each size n (50, 200, 1,000) we draw `SETS` test sets of n rows, score
each exactly as ``llmscisci score`` does (`eval.counts`, `eval.stats`: BCa and percentile
intervals from the same 1,000 resamples over rows) and count how often the interval holds the
population value of accuracy, micro-F1 and macro-F1. The population's macro-F1 averages every
category; a small test set that happens to miss a rare category averages the others (the
convention of the report), so its estimand differs from the truth there: the table shows how
often that happens and what it costs.

    python -m bench.bench_coverage [--sets 1000] [--resamples 1000]

The goal is 93-97% everywhere; a Monte Carlo error of about ±1.4 points (1,000 sets, 95%
binomial) comes with every figure.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

SIZES = (50, 200, 1000)
SETS = 1000
RESAMPLES = 1000
METRICS = ("accuracy", "micro_f1", "macro_f1")
METHODS = ("bca", "percentile")


@dataclass(frozen=True)
class Single:
    shares: tuple[float, ...] = (0.54, 0.32, 0.14)
    right: tuple[float, ...] = (0.85, 0.75, 0.6)
    invalid: float = 0.05
    kind: str = "single"

    def joint(self) -> np.ndarray:
        """P(gold = g, answer = a) with a = K for an invalid answer."""
        k = len(self.shares)
        out = np.zeros((k, k + 1))
        for g, (share, right) in enumerate(zip(self.shares, self.right, strict=True)):
            out[g, k] = share * self.invalid
            out[g, g] = share * (1 - self.invalid) * right
            for a in range(k):
                if a != g:
                    out[g, a] = share * (1 - self.invalid) * (1 - right) / (k - 1)
        return out

    def truth(self) -> dict[str, float]:
        j = self.joint()
        k = len(self.shares)
        tp = np.diag(j[:, :k])
        support, predicted = j.sum(axis=1), j[:, :k].sum(axis=0)
        f1 = 2 * tp / (support + predicted)
        return {
            "accuracy": tp.sum(),
            "micro_f1": 2 * tp.sum() / (support.sum() + predicted.sum()),
            "macro_f1": f1.mean(),
        }

    def draw(self, n: int, rng: np.random.Generator) -> tuple[list, list]:
        j = self.joint().ravel()
        k = len(self.shares)
        cells = rng.choice(j.size, size=n, p=j / j.sum())
        gold, answer = cells // (k + 1), cells % (k + 1)
        return gold.tolist(), [None if a == k else int(a) for a in answer]


@dataclass(frozen=True)
class Multi:
    prevalence: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05)
    miss: float = 0.2
    add: float = 0.1
    invalid: float = 0.05
    kind: str = "multi"

    def truth(self) -> dict[str, float]:
        p = np.array(self.prevalence)
        v = 1 - self.invalid
        tp = v * p * (1 - self.miss)
        fp = v * (1 - p) * self.add + self.invalid * (1 - p)
        fn = v * p * self.miss + self.invalid * p
        exact = v * np.prod(p * (1 - self.miss) + (1 - p) * (1 - self.add))
        return {
            "accuracy": exact,
            "micro_f1": 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()),
            "macro_f1": (2 * tp / (2 * tp + fp + fn)).mean(),
        }

    def draw(self, n: int, rng: np.random.Generator) -> tuple[list, list]:
        p = np.array(self.prevalence)
        gold = (rng.random((n, p.size)) < p).astype(int)
        flip = np.where(
            gold == 1, rng.random(gold.shape) < self.miss, rng.random(gold.shape) < self.add
        )
        answer = np.where(flip, 1 - gold, gold)
        invalid = rng.random(n) < self.invalid
        return gold.tolist(), [
            None if bad else a for bad, a in zip(invalid, answer.tolist(), strict=True)
        ]


POPULATIONS = {"single": Single(), "multi": Multi()}


def _kinds(pop):
    from llmscisci_cfg.task.kinds import MultiLabel, SingleLabel

    if pop.kind == "single":
        return {"a": SingleLabel(tuple(f"c{i}" for i in range(len(pop.shares))))}
    return {"a": MultiLabel(tuple(f"c{i}" for i in range(len(pop.prevalence))))}


def intervals(pop, gold, answer, resamples: int, seed: int) -> tuple[dict, dict, bool]:
    """{(metric, method): [lo, hi]}, the point estimates, and whether a category is missing."""
    from llmscisci_cfg.eval import stats
    from llmscisci_cfg.eval.metrics import Scored, parts

    kinds = _kinds(pop)
    rows = [
        Scored("a", g, a, True, doc=str(i))
        for i, (g, a) in enumerate(zip(gold, answer, strict=True))
    ]
    part = parts(rows, kinds)["a"]
    index = stats.units(r.doc for r in rows)
    t = stats.PartTables.build(part, index)
    boot = stats.bootstrap(t.tables, t.values, resamples, seed)
    out = {(m, method): boot.interval(m, method) for m in METRICS for method in METHODS}
    missing = not bool(t.mask.all())
    return out, {m: boot.point[m] for m in METRICS}, missing


def study(pop, n: int, sets: int, resamples: int, seed: int = 0) -> dict:
    truth = pop.truth()
    rng = np.random.default_rng((seed, n))
    hits = {(m, method): 0 for m in METRICS for method in METHODS}
    widths = {(m, method): [] for m in METRICS for method in METHODS}
    below = {(m, method): 0 for m in METRICS for method in METHODS}  # truth above the interval
    points = {m: [] for m in METRICS}
    missing = 0
    for s in range(sets):
        gold, answer = pop.draw(n, rng)
        ivs, point, miss = intervals(pop, gold, answer, resamples, seed=s)
        missing += miss
        for m in METRICS:
            points[m].append(point[m])
        for key, iv in ivs.items():
            t = truth[key[0]]
            if iv is not None and iv[0] <= t <= iv[1]:
                hits[key] += 1
            elif iv is not None and t > iv[1]:
                below[key] += 1
            if iv is not None:
                widths[key].append(iv[1] - iv[0])
    return {
        "truth": {m: float(v) for m, v in truth.items()},
        "coverage": {f"{m}/{method}": hits[(m, method)] / sets for m, method in hits},
        "truth_above": {f"{m}/{method}": below[(m, method)] / sets for m, method in below},
        "width": {f"{m}/{method}": float(np.mean(w)) for (m, method), w in widths.items()},
        "bias": {m: float(np.mean(v) - truth[m]) for m, v in points.items()},
        "sets_missing_a_category": missing / sets,
    }


def run(sets: int = SETS, resamples: int = RESAMPLES) -> dict:
    """Every population × size; flat keys for bench/results.json (all contain ``coverage``)."""
    out: dict = {}
    started = time.perf_counter()
    for name, pop in POPULATIONS.items():
        for n in SIZES:
            found = study(pop, n, sets, resamples)
            for key, value in found["coverage"].items():
                metric, method = key.split("/")
                out[f"coverage_{name}_{metric}_n{n}_{method}"] = round(value, 3)
            for key, value in found["truth_above"].items():
                metric, method = key.split("/")
                out[f"coverage_{name}_{metric}_n{n}_{method}_truth_above"] = round(value, 3)
            for key, value in found["width"].items():
                metric, method = key.split("/")
                out[f"coverage_{name}_{metric}_n{n}_{method}_width"] = round(value, 4)
            for metric, value in found["bias"].items():
                out[f"coverage_{name}_{metric}_n{n}_point_bias"] = round(value, 4)
            out[f"coverage_{name}_n{n}_sets_missing_a_category"] = round(
                found["sets_missing_a_category"], 3
            )
            print(name, n, found["coverage"], f"{time.perf_counter() - started:.0f} s", flush=True)
        for metric, value in pop.truth().items():
            out[f"coverage_{name}_{metric}_truth"] = round(float(value), 4)
    out["coverage_sets"] = sets
    out["coverage_resamples"] = resamples
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=SETS)
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    args = parser.parse_args()
    print(run(args.sets, args.resamples))
