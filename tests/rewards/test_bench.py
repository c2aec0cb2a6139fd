"""The reward benchmark runs and both implementations agree (timings are reported, not asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_rewards.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_rewards", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_and_agrees_with_the_notebook_baseline():
    bench = load_bench()
    result = bench.run(n=200, repeats=1)
    assert result["n"] == 200
    assert result["rewards"] == ["format", "stepwise_label", "hamming"]
    assert result["agree"] is True
    assert result["ours_seconds"] > 0 and result["baseline_seconds"] > 0
    assert result["speedup"] == result["baseline_seconds"] / result["ours_seconds"]


def test_synthetic_batch_covers_the_interesting_cases():
    bench = load_bench()
    batch = bench.make_batch(400)
    texts = [c[0]["content"] for c in batch["completions"]]
    scores = bench.nb_stepwise(batch["completions"])
    assert {0.0, 1.0} <= set(scores) and len(set(scores)) >= 4  # valid, invalid and partial labels
    assert len(batch["frame"]) == 100 and len(texts) == 400
