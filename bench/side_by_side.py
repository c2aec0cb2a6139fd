"""Time a baseline and a candidate side by side: interleaved rounds, the first a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def side_by_side(
    baseline: Callable[[], Any],
    candidate: Callable[[], Any],
    repeats: int,
    check: Callable[[Any, Any], None] | None = None,
) -> tuple[float, float]:
    """Median seconds of ``baseline()`` and ``candidate()`` over ``repeats`` rounds after one
    warm-up round, each round running both in turn; ``check(baseline_out, candidate_out)``
    runs on every round (an assertion that both computed the same)."""
    base_s: list[float] = []
    cand_s: list[float] = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        expected = baseline()
        t1 = time.perf_counter()
        got = candidate()
        t2 = time.perf_counter()
        if check is not None:
            check(expected, got)
        if i:
            base_s.append(t1 - t0)
            cand_s.append(t2 - t1)
    return statistics.median(base_s), statistics.median(cand_s)
