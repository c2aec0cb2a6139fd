"""`python -m bench`'s table: goals, and when each suite last ran."""

from __future__ import annotations

from bench.__main__ import SUITES, write_markdown


def test_the_table_says_when_each_suite_ran_and_which_goals_are_met():
    results = {
        "machine": "x86_64 2 cores",
        "date": "2026-11-26",  # written before per-suite dates were kept
        "dates": {"memory": "2026-11-27"},
        "memory_estimate_error_dpo": 0.046,
        "memory_estimate_error_grpo": -0.31,
        "memory_measured_mib_dpo": 652.9,
    }
    md = write_markdown(results)
    older = ", ".join(name for name in SUITES if name != "memory")
    assert f"suites run on 2026-11-26 ({older}); 2026-11-27 (memory)." in md
    assert "| `memory_estimate_error_dpo` |" in md and "| 0.046 | yes |" in md
    assert "| -0.31 | **no** |" in md  # outside ±20%
    assert "- `memory_measured_mib_dpo`: 652.9" in md and "`dates`" not in md
