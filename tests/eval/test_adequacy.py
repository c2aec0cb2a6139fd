"""When the data cannot support a claim (llmscisci_cfg.eval.adequacy): thresholds, and the
smallest detectable difference checked against an exact power computation by scipy."""

from __future__ import annotations

import doctest

import pytest
from scipy.stats import binom, binomtest

from llmscisci_cfg.eval import adequacy


def test_module_doctest():
    assert doctest.testmod(adequacy).failed == 0


def _power(d: int, b: int) -> float:
    """P(the exact two-sided McNemar test rejects at 0.05) when b ~ Binomial(d, b/d)."""
    p = b / d
    return sum(binom.pmf(k, d, p) for k in range(d + 1) if binomtest(k, d, 0.5).pvalue <= 0.05)


@pytest.mark.parametrize("d", [6, 10, 25, 40, 80])
def test_the_80_percent_power_difference_equals_an_exact_computation(d):
    n = 200
    found = adequacy.detectable_difference(n, d)["at_80_power"]
    needed = next((b for b in range((d + 1) // 2, d + 1) if _power(d, b) >= 0.8), None)
    assert found == (None if needed is None else round((2 * needed - d) / n, 4))
    if needed is not None and needed > (d + 1) // 2:
        assert _power(d, needed - 1) < 0.8  # the smallest such difference


def test_the_floor_is_six_one_way_disagreements():
    assert adequacy.MIN_DISCORDANT == 6
    assert binomtest(0, 6, 0.5).pvalue < 0.05 < binomtest(0, 5, 0.5).pvalue
    assert adequacy.detectable_difference(60)["floor"] == 0.1


def test_thresholds():
    per_class = {"a": {"support": 4}, "b": {"support": 5}, "c": {"support": 0}}
    alone = adequacy.check(30, "documents", per_class, 60)  # one model: nothing to compare
    assert [w["code"] for w in alone] == ["rare_categories", "categories_without_gold"]
    found = adequacy.check(30, "documents", per_class, 60, {"p and r": 12})
    assert [w["code"] for w in found] == ["rare_categories", "categories_without_gold",
                                          "detectable_difference"]  # fmt: skip
    assert found[0]["categories"] == {"a": 4} and found[1]["categories"] == ["c"]
    small = adequacy.check(29, "documents", {"b": {"support": 5}}, 58, {"p and r": 10})
    assert [w["code"] for w in small] == ["small_test_set", "detectable_difference"]
    assert "p and r disagree on 10 examples" in small[1]["message"]
    assert adequacy.check(30, "rows", {"b": {"support": 5}}, 30) == []
    tiny = adequacy.check(4, "rows", {"b": {"support": 2}}, 4, {"a and b": 1})[-1]["message"]
    assert tiny.startswith(  # fewer examples than the test needs disagreements: no difference
        "on 4 labelled examples McNemar's exact test cannot declare any accuracy difference: "
        "it needs at least 6 disagreements, all one way"
    )
    assert adequacy.markdown([]) == [] and adequacy.markdown(small)[0] == "## Warnings"
