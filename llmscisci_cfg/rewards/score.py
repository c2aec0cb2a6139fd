"""Scoring completions with a reward stack exactly as TRL's GRPO trainer calls it.

Every column of the rows and TRL's own keyword arguments are passed, async plug-ins are
awaited, None values (NaN) are left out of the weighted total; rows are grouped in order,
``group_size`` at a time, as GRPO groups the generations of one prompt. Used by
``rewards test`` and by ``eval``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.rewards.compose import RewardStack

COMPLETION = "completion"

#: A category count, or one per aspect (what `rewards test` shows).
NumCategories = Any


@dataclass(frozen=True)
class GroupStat:
    """Spread of the weighted total over one group (std with Bessel's correction, as TRL)."""

    first: int
    last: int
    mean: float
    std: float

    @property
    def zero_variance(self) -> bool:
        return self.last > self.first and math.isclose(self.std, 0.0, abs_tol=1e-8)


@dataclass(frozen=True)
class ScoreReport:
    """Scores of every completion by every reward, their weighted totals and group spreads."""

    names: list[str]
    weights: list[float]
    scores: list[list[float]]  # [completion][reward]
    totals: list[float]
    groups: list[GroupStat]
    num_categories: NumCategories = 0
    notes: list[str] = field(default_factory=list)

    @property
    def zero_variance_groups(self) -> list[GroupStat]:
        return [g for g in self.groups if g.zero_variance]

    def json_lines(self) -> list[str]:
        """One ``{"index", "rewards", "total"}`` object per completion (NaN, ±inf → null)."""
        return [
            json.dumps(
                {
                    "index": i,
                    "rewards": {n: _json_num(v) for n, v in zip(self.names, row, strict=True)},
                    "total": _json_num(total),
                }
            )
            for i, (row, total) in enumerate(zip(self.scores, self.totals, strict=True))
        ]


def _json_num(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN or infinity


def score(
    stack: RewardStack,
    rows: Sequence[dict[str, Any]],
    group_size: int | None = None,
    num_categories: NumCategories = 0,
    notes: Sequence[str] = (),
) -> ScoreReport:
    """Call every reward of ``stack`` on ``rows`` the way TRL does, and total them."""
    n = len(rows)
    size = group_size or n
    if size < 1 or n % size:
        raise UserError(
            f"{n} completions do not split into groups of {size}; give --group-size that divides {n}"
        )
    kwargs = trainer_kwargs(rows)
    columns = [
        _call(fn, name, n, kwargs) for fn, name in zip(stack.funcs, stack.names, strict=True)
    ]
    scores = [list(r) for r in zip(*columns, strict=True)] if columns else [[] for _ in range(n)]
    totals = [_weighted(row, stack.weights) for row in scores]
    groups = [_group(totals, start, start + size - 1) for start in range(0, n, size)]
    return ScoreReport(
        stack.names, stack.weights, scores, totals, groups, num_categories, list(notes)
    )


def trainer_kwargs(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The keyword arguments TRL would pass: every column, plus prompts, completions, state."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    kwargs: dict[str, Any] = {
        k: [row.get(k) for row in rows]
        for k in keys
        if k not in (COMPLETION, "prompt", "completion_ids")
    }
    kwargs["prompts"] = [row.get("prompt", "") for row in rows]
    kwargs["completions"] = [row[COMPLETION] for row in rows]
    kwargs["completion_ids"] = [row.get("completion_ids") for row in rows]
    kwargs["trainer_state"] = None
    kwargs["log_extra"] = _ignore
    kwargs["log_metric"] = _ignore
    return kwargs


def _ignore(*args: Any, **kwargs: Any) -> None:
    """Stands in for TRL's log_extra / log_metric."""


def _call(fn, name: str, n: int, kwargs: dict[str, Any]) -> list[float]:
    """One reward's values as floats (None → NaN); the `RewardFn` checks its contract."""
    out = fn(**kwargs)
    if inspect.isawaitable(out):  # an async plug-in (TRL awaits it on its event loop)
        out = asyncio.run(out)
    try:
        return [math.nan if v is None else float(v) for v in out]
    except (TypeError, ValueError) as exc:
        raise UserError(f"reward {name!r} returned a value that is not a number: {exc}") from None


def _weighted(row: list[float], weights: list[float]) -> float:
    """TRL's total: the weighted sum, skipping None (NaN) values; NaN when all are NaN."""
    parts = [v * w for v, w in zip(row, weights, strict=True) if not math.isnan(v)]
    return math.fsum(parts) if parts else math.nan


def _group(totals: list[float], first: int, last: int) -> GroupStat:
    values = [v for v in totals[first : last + 1] if not math.isnan(v)]
    if not values:
        return GroupStat(first, last, math.nan, math.nan)
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return GroupStat(first, last, mean, math.nan)
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return GroupStat(first, last, mean, math.sqrt(var))
