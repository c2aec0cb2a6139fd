"""bench/bench_rollouts.py on a handful of rows: equal ids (asserted inside) and its figures."""

from __future__ import annotations

from bench import bench_rollouts


def test_rollout_bench_compares_equal_greedy_ids(isolated_cache):
    figures = bench_rollouts.run(rows=4, max_new_tokens=8, repeats=1)
    assert set(figures) == {
        "rollouts_policy_tokens_per_s",
        "rollouts_merged_tokens_per_s",
        "rollouts_merged_vs_policy",
    }
    assert all(v > 0 for v in figures.values())
