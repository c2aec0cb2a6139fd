"""`llmscisci score` on 100,000 rows against scikit-learn on the same table.

A seeded synthetic single-label table (SciCite's three classes and class shares; two
prediction columns, one with empty and unknown answers) is written to CSV once. Both sides
start from that file and compute the same numbers: per column accuracy and macro / micro /
weighted precision, recall and F1 over the classes with gold support, per-class scores and
the confusion matrix, with bootstrap intervals over rows, and the paired differences.

- candidate: `llmscisci_cfg.eval.score` (the command minus process start-up);
- baseline: the notebook way, scikit-learn's `precision_recall_fscore_support`,
  `accuracy_score` and `confusion_matrix` on the decoded columns, and a bootstrap loop that
  calls them on every resample (percentile intervals, which need no jackknife).

Both run with the same number of resamples (`--resamples`, default 200: the baseline's loop
takes about a minute per 200 on 2 cores); the command's default of 1,000 is timed alone
(``score_100k_seconds``). The point estimates of both are checked equal on every round.

    python -m bench.bench_score [--rows 100000] [--resamples 200]
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.side_by_side import side_by_side

CLASSES = ("background information", "method", "results comparison")
SHARES = (0.54, 0.32, 0.14)
TASK = """name: bench_intent
answer: single
aspects:
  intent:
    text_column: text
    title: Citation
    question: Why is the work cited?
    categories: [background information, method, results comparison]
system_prompt: Answer.
user_prompt: "{{ text }}"
"""


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "gold", "a", "b"])
        for i in range(rows):
            g = rng.choices(CLASSES, SHARES)[0]
            a = g if rng.random() < 0.8 else rng.choice([*CLASSES, "", "unsure"])
            b = g if rng.random() < 0.7 else rng.choice(CLASSES)
            w.writerow([i, g, a, b])


def candidate(table: Path, task: Path, resamples: int, method: str = "percentile") -> dict:
    from llmscisci_cfg.data.table import read_table
    from llmscisci_cfg.eval.columns import join, task_kinds
    from llmscisci_cfg.eval.score import score

    _, kinds = task_kinds(str(task), None, task.parent)
    joined = join([read_table(table)], None)
    return score(joined, kinds, "gold", ["a", "b"], resamples, 0, method).as_json()


def baseline(table: Path, resamples: int) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    with table.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    index = {c: i for i, c in enumerate(CLASSES)}
    gold = np.array([index[r["gold"]] for r in rows])
    preds = {c: np.array([index.get(r[c].strip().casefold(), -1) for r in rows]) for c in "ab"}
    labels = sorted(set(gold.tolist()))

    def metrics(g, p):
        out = {"accuracy": accuracy_score(g, p)}
        for avg in ("macro", "micro", "weighted"):
            pr, rc, f1, _ = precision_recall_fscore_support(
                g, p, labels=labels, average=avg, zero_division=0
            )
            out |= {f"{avg}_precision": pr, f"{avg}_recall": rc, f"{avg}_f1": f1}
        return out

    rng = np.random.default_rng(0)
    out = {}
    draws = [rng.integers(0, len(gold), len(gold)) for _ in range(resamples)]
    for c, p in preds.items():
        point = metrics(gold, p)
        per_class = precision_recall_fscore_support(
            gold, p, labels=labels, average=None, zero_division=0
        )
        values = {k: [] for k in point}
        for d in draws:
            for k, v in metrics(gold[d], p[d]).items():
                values[k].append(v)
        out[c] = {
            **point,
            **{f"{k}_ci": np.percentile(v, [2.5, 97.5]).tolist() for k, v in values.items()},
            "per_class": per_class,
            "confusion": confusion_matrix(gold, p, labels=[0, 1, 2, -1]),
        }
    answered = np.array([r["a"].strip() != "" for r in rows])  # rows both answered
    g, pa, pb = gold[answered], preds["a"][answered], preds["b"][answered]
    diffs = []
    for _ in range(resamples):
        d = rng.integers(0, len(g), len(g))
        diffs.append(metrics(g[d], pa[d])["macro_f1"] - metrics(g[d], pb[d])["macro_f1"])
    out["pair_ci"] = np.percentile(diffs, [2.5, 97.5]).tolist()
    return out


def _check(expected: dict, got: dict) -> None:
    for c in "ab":
        for key in ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_precision"):
            assert abs(expected[c][key] - got["columns"][c][key]) < 1e-12, (c, key)


def run(rows: int = 100_000, resamples: int = 200, repeats: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        table, task = Path(tmp, "table.csv"), Path(tmp, "task.yaml")
        write_table(table, rows)
        task.write_text(TASK, encoding="utf-8")
        base_s, cand_s = side_by_side(
            lambda: baseline(table, resamples),
            lambda: candidate(table, task, resamples),
            repeats,
            _check,
        )
        started = time.perf_counter()
        full = candidate(table, task, 1000, "bca")
        full_s = time.perf_counter() - started
    return {
        "score_100k_seconds": round(full_s, 2),
        "score_100k_resamples": 1000,
        "score_vs_sklearn_ratio": round(base_s / cand_s, 1),
        "score_vs_sklearn_resamples": resamples,
        "score_sklearn_seconds": round(base_s, 2),
        "score_candidate_seconds": round(cand_s, 2),
        "score_rows": rows,
        "score_columns": len(full["columns"]),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(run(args.rows, args.resamples, args.repeats))
