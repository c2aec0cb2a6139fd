"""bench/bench_coverage.py and bench/bench_score.py on small sizes: the populations' true
values, the coverage table, and the score benchmark's equal points (asserted inside)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import bench_coverage, bench_score
from bench.__main__ import coverage_table


@pytest.mark.parametrize("name", list(bench_coverage.POPULATIONS))
def test_the_populations_true_values_are_what_a_large_sample_scores(name):
    from llmscisci_cfg.eval.metrics import Scored, model_report

    pop = bench_coverage.POPULATIONS[name]
    gold, answer = pop.draw(200_000, np.random.default_rng(1))
    rows = [Scored("a", g, a, True) for g, a in zip(gold, answer, strict=True)]
    found = model_report(rows, bench_coverage._kinds(pop))["a"]
    for metric, truth in pop.truth().items():
        assert found[metric] == pytest.approx(truth, abs=0.005), metric


def test_a_small_study_counts_coverage_per_metric_and_method():
    found = bench_coverage.study(bench_coverage.Single(), n=60, sets=20, resamples=200)
    assert set(found["coverage"]) == {
        f"{m}/{method}" for m in bench_coverage.METRICS for method in bench_coverage.METHODS
    }
    assert all(0.5 <= v <= 1.0 for v in found["coverage"].values())
    assert found["sets_missing_a_category"] == 0.0


def test_the_coverage_table_marks_figures_outside_the_goal():
    results = {"coverage_sets": 1000, "coverage_resamples": 1000}
    for pop in bench_coverage.POPULATIONS:
        for metric in bench_coverage.METRICS:
            results[f"coverage_{pop}_{metric}_truth"] = 0.5
            for n in bench_coverage.SIZES:
                for method in bench_coverage.METHODS:
                    results[f"coverage_{pop}_{metric}_n{n}_{method}"] = 0.95
    results["coverage_multi_macro_f1_n50_percentile"] = 0.912
    results["coverage_multi_n50_sets_missing_a_category"] = 0.086
    md = "\n".join(coverage_table(results))
    assert "| multi | macro_f1 | 0.5 | 95.0% | **91.2%** |" in md
    assert "multi n=50: 8.6%" in md and "goal: 93%–97%" in md
    assert coverage_table({}) == []


def test_score_benchmark_on_a_small_table():
    figures = bench_score.run(rows=2000, resamples=20, repeats=1)
    assert figures["score_rows"] == 2000 and figures["score_columns"] == 2
    assert figures["score_vs_sklearn_ratio"] > 0 and figures["score_100k_seconds"] > 0
