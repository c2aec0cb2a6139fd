"""Say when the data cannot support a claim: small test sets, rare categories, and the
smallest difference the paired test could detect at that size.

Thresholds: fewer than `MIN_UNITS` documents (rows for ``score``), or a category with gold
support but fewer than `MIN_POSITIVES` gold positives. Then the report states the smallest
accuracy difference McNemar's exact test can detect:

- *at all*: a two-sided exact test on ``n`` examples reaches p < 0.05 only with at least
  `MIN_DISCORDANT` (6) discordant examples all in one direction (2 · 0.5^6 = 0.031), so no
  difference below 6 / n can ever be declared;
- *with 80% power*, given the share of examples on which the two models disagree (observed;
  without a comparison, the 6 / n floor only): the smallest difference b − c over n whose
  exact test rejects with probability ≥ 0.8, the disagreements held at their observed number.

>>> detectable_difference(20)
{'examples': 20, 'floor': 0.3, 'discordant': None, 'at_80_power': None}
>>> detectable_difference(200, discordant=40)["at_80_power"]
0.09
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MIN_UNITS = 30
MIN_POSITIVES = 5
ALPHA = 0.05
POWER = 0.8
MIN_DISCORDANT = next(k for k in range(1, 64) if 2 * 0.5**k < ALPHA)  # 6


def detectable_difference(n: int, discordant: int | None = None) -> dict[str, Any]:
    """The smallest accuracy differences McNemar's exact test can detect on ``n`` examples:
    ever (``floor``), and with 80% power when the models disagree on ``discordant`` of them."""
    out: dict[str, Any] = {
        "examples": n,
        "floor": round(MIN_DISCORDANT / n, 4) if n else None,
        "discordant": discordant,
        "at_80_power": None,
    }
    if n and discordant:
        b = _power_b(discordant)
        out["at_80_power"] = None if b is None else round((2 * b - discordant) / n, 4)
    return out


def _power_b(d: int) -> int | None:
    """The expected b (of ``d`` discordant examples) at which the exact two-sided test at
    `ALPHA` rejects with probability ≥ `POWER`, or None when no b does."""
    from scipy.special import bdtr, bdtrc

    # rejection region: b <= k_lo or b >= d - k_lo
    k_lo = -1
    while k_lo + 1 < d and 2 * bdtr(k_lo + 1, d, 0.5) <= ALPHA:
        k_lo += 1
    if k_lo < 0:
        return None
    upper = d - k_lo
    for b in range(math.ceil(d / 2), d + 1):
        p = b / d
        power = (bdtrc(upper - 1, d, p) if p < 1 else 1.0) + bdtr(k_lo, d, p)
        if power >= POWER:
            return b
    return None


def rare_classes(per_class: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Classes with gold support but fewer than `MIN_POSITIVES` gold positives."""
    return {k: int(v["support"]) for k, v in per_class.items() if 0 < v["support"] < MIN_POSITIVES}


def absent_classes(per_class: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Classes without gold support (left out of every average)."""
    return [k for k, v in per_class.items() if v["support"] == 0]


def check(
    n_units: int,
    unit: str,
    per_class: Mapping[str, Mapping[str, Any]],
    examples: int,
    discordant: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """The warnings of one evaluated set: ``per_class`` (keys ``aspect/category`` when pooled)
    with supports; ``examples`` labelled; ``discordant``: comparison name → disagreements."""
    found = []
    rare = rare_classes(per_class)
    small = n_units < MIN_UNITS
    if small:
        found.append(
            {
                "code": "small_test_set",
                "message": f"the test set has {n_units} {unit} (fewer than {MIN_UNITS}): "
                "intervals are wide, and below this size bootstrap intervals cover less often "
                "than their nominal 95% (bench/RESULTS.md)",
            }
        )
    if rare:
        listed = ", ".join(f"{k} ({v})" for k, v in rare.items())
        found.append(
            {
                "code": "rare_categories",
                "message": f"{len(rare)} categories have fewer than {MIN_POSITIVES} gold "
                f"positives: {listed}; their per-category scores and intervals rest on too "
                "few examples, and the macro averages inherit that",
                "categories": rare,
            }
        )
    absent = absent_classes(per_class)
    if absent:
        found.append(
            {
                "code": "categories_without_gold",
                "message": f"{len(absent)} categories have no gold example and are left out "
                f"of every average: {', '.join(absent)}",
                "categories": absent,
            }
        )
    if (small or rare) and examples and discordant:  # only where something is compared
        found.append(_detectable(examples, discordant))
    return found


def _detectable(examples: int, discordant: Mapping[str, int]) -> dict[str, Any]:
    floor = detectable_difference(examples)
    if examples < MIN_DISCORDANT:
        text = (
            f"on {examples} labelled examples McNemar's exact test cannot declare any accuracy "
            f"difference: it needs at least {MIN_DISCORDANT} disagreements, all one way"
        )
    else:
        text = (
            f"on {examples} labelled examples McNemar's exact test cannot declare any accuracy "
            f"difference below {floor['floor']:.3f} ({MIN_DISCORDANT} disagreements, all one way)"
        )
    powers = {}
    for name, d in discordant.items():
        found = detectable_difference(examples, d)
        powers[name] = found
        if found["at_80_power"] is not None:
            text += (
                f"; {name} disagree on {d} examples, so only a difference of at least "
                f"{found['at_80_power']:.3f} would be detected with 80% power"
            )
        else:
            text += f"; {name} disagree on {d} examples, too few for 80% power at any difference"
    return {"code": "detectable_difference", "message": text, "floor": floor, "pairs": powers}


def warnings(rep: dict[str, Any], models: list[str], unit: str = "documents") -> list[dict]:
    """The warnings of an eval report (`report.build_report`)."""
    if not models:
        return []
    first = rep[models[0]]
    per_class = first["overall"].get("per_class", {})
    if len([p for p in first if p != "overall"]) == 1:  # one aspect: its own category names
        aspect = next(p for p in first if p != "overall")
        per_class = first[aspect].get("per_class", {})
    discordant = {
        f"{c['policy']} and {c['reference']}": c["mcnemar"]["b"] + c["mcnemar"]["c"]
        for c in rep.get("comparisons", [])
    }
    return check(
        rep["bootstrap"]["documents"], unit, per_class, first["overall"]["n_labelled"], discordant
    )


def console_lines(found: list[dict[str, Any]]) -> list[str]:
    """The warnings as the console prints them."""
    return [f"warning: {w['message']}" for w in found]


def markdown(found: list[dict[str, Any]]) -> list[str]:
    """The warnings as the top of a report shows them (nothing when there is none)."""
    if not found:
        return []
    return [
        "## Warnings",
        "",
        *(f"- **{w['message'][0].upper()}{w['message'][1:]}.**" for w in found),
        "",
    ]
