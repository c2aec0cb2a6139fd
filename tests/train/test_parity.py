"""Parity with hand-written TRL (bench/bench_runner.py): identical losses for SFT and GRPO."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_losses_identical_to_a_direct_trl_script(method, tmp_path):
    from bench.bench_runner import compare

    # compare() raises when any loss differs
    figures = compare(method, repeats=1, scratch=tmp_path, warmup=False)
    assert figures[f"losses_identical_{method}"] is True
    assert figures[f"max_abs_loss_{method}"] > 0  # a job that learns, not a trivially equal zero
