"""Label constraints: which one-hot answers a task accepts beyond the one-hot rule itself.

Off by default, so the research's rewards stay exact. A task file (or one aspect of it) may
declare them::

    constraints:
      exclusive: [5]      # category 5 ("none of the others") must appear alone
      min_positive: 1     # at least one category set: the all-zero answer is refused

Categories are named by their human code (the aspect's ``codes``, else their number 1..n in
list order), as the task file numbers them. `LabelConstraints` is that YAML form and `LabelRule`
that form resolved for one aspect to 0-based positions: the object every consumer checks with
(gold validation, the label rewards, eval validity, structured output). A label that breaks
its rule is treated as an invalid answer, never as a wrong one.

>>> rule = LabelConstraints(exclusive=[5], min_positive=1).rule({str(i): i - 1 for i in range(1, 6)}, 5)
>>> rule.allows([0, 0, 0, 0, 0]), rule.allows([1, 0, 0, 0, 1]), rule.allows([0, 0, 0, 0, 1])
(False, False, True)

Import-light (pydantic only): ``validate`` loads tasks.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

Key = tuple[str | int, ...]
_CODE = re.compile(r"[1-9]\d*")


class LabelConstraints(BaseModel):
    """The ``constraints`` of a task file (or of one aspect, replacing the task's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exclusive: list[str] = Field(
        default_factory=list,
        description="Categories that must appear alone, by human code (the aspect's `codes`, "
        "else their number 1..n), e.g. [5]: when category 5 is 1, every other is 0.",
    )
    min_positive: int = Field(
        0, ge=0, description="At least this many categories set; 1 refuses the all-zero answer."
    )

    @field_validator("exclusive", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        """Codes as text: ``5`` and ``"5"`` are the same code; booleans and ``0`` are not codes."""
        if not isinstance(value, list):
            return value
        out = []
        for given in value:
            code = str(given) if isinstance(given, int) and not isinstance(given, bool) else given
            if not isinstance(code, str) or not _CODE.fullmatch(code.strip()):
                raise ValueError(
                    f"{given!r} is not a category code; write codes as the task numbers them, "
                    "e.g. [5]"
                )
            out.append(code.strip())
        dup = sorted({c for c in out if out.count(c) > 1})
        if dup:
            raise ValueError(f"code {dup[0]} is listed twice")
        return out

    def problems(self, code_index: Mapping[str, int], n: int) -> list[tuple[Key, str]]:
        """``(key, message)`` for each way these constraints do not fit an aspect of ``n``
        categories whose codes are ``code_index`` (code → 0-based position)."""
        found: list[tuple[Key, str]] = []
        for i, code in enumerate(self.exclusive):
            if code not in code_index:
                known = ", ".join(sorted(code_index, key=int))
                found.append((("exclusive", i), f"code {code} names no category; codes: {known}"))
        if self.min_positive > n:
            found.append(
                (("min_positive",), f"{self.min_positive} is more than the {n} categories")
            )
        elif self.min_positive > 1 and self.exclusive:
            found.append(
                (
                    ("min_positive",),
                    f"with min_positive {self.min_positive} an exclusive category (set alone: one "
                    "positive) could never be chosen; smallest fix: min_positive: 1",
                )
            )
        return found

    def rule(self, code_index: Mapping[str, int], n: int) -> LabelRule:
        """These constraints for one aspect; a `ValueError` when they do not fit it."""
        found = self.problems(code_index, n)
        if found:
            key, message = found[0]
            raise ValueError(f"constraints.{'.'.join(map(str, key))}: {message}")
        return LabelRule(
            n=n,
            exclusive=tuple(code_index[c] for c in self.exclusive),
            min_positive=self.min_positive,
            codes=tuple(self.exclusive),
        )


@dataclass(frozen=True)
class LabelRule:
    """`LabelConstraints` resolved for one aspect: exclusive 0-based positions, minimum count.

    Frozen and hashable (structured output keys its grammars by it). ``codes`` only names the
    exclusive categories in messages.
    """

    n: int
    exclusive: tuple[int, ...] = ()
    min_positive: int = 0
    codes: tuple[str, ...] = field(default=(), compare=False)

    def allows(self, label: Sequence[int]) -> bool:
        """Whether a valid one-hot ``label`` (of ``n`` 0/1 values) keeps the constraints."""
        k = sum(label)
        if k < self.min_positive:
            return False
        if k > 1:
            for i in self.exclusive:
                if label[i]:
                    return False
        return True

    def violation(self, label: Sequence[int]) -> str | None:
        """Why ``label`` breaks the constraints, or None when it keeps them.

        >>> LabelRule(5, (4,), 1, ("5",)).violation([1, 0, 0, 0, 1])
        'category 5 must appear alone (constraints.exclusive)'
        """
        k = sum(label)
        if k < self.min_positive:
            return (
                f"{k} categories set, at least {self.min_positive} required "
                "(constraints.min_positive)"
            )
        for i, code in zip(self.exclusive, self._shown(), strict=True):
            if k > 1 and label[i]:
                return f"category {code} must appear alone (constraints.exclusive)"
        return None

    def _shown(self) -> tuple[str, ...]:
        return self.codes or tuple(str(i + 1) for i in self.exclusive)

    def describe(self) -> str:
        """One line for reports: ``category 5 alone, at least 1 category set``."""
        parts = [f"category {c} alone" for c in self._shown()]
        if self.min_positive:
            plural = "y" if self.min_positive == 1 else "ies"
            parts.append(f"at least {self.min_positive} categor{plural} set")
        return ", ".join(parts) or "no constraint"

    def labels(self) -> list[tuple[int, ...]]:
        """Every label the rule allows, in binary order (small ``n`` only: 2^n labels)."""
        return [b for b in itertools.product((0, 1), repeat=self.n) if self.allows(b)]


#: What the label rewards and the eval receive: one rule, one per aspect, or none.
LabelRules = LabelRule | Mapping[str, LabelRule | None] | None


def rule_for(rules: LabelRules, aspect: Any) -> LabelRule | None:
    """The rule of ``aspect`` in ``rules`` (one rule, a mapping by aspect, or None)."""
    if rules is None or isinstance(rules, LabelRule):
        return rules
    return rules.get(aspect) if isinstance(aspect, str) else None


def per_row(rules: LabelRules, aspects: Sequence | None, size: int) -> list[LabelRule | None]:
    """The rule of each of ``size`` rows (``aspects``: each row's aspect). Without aspects, a
    mapping whose aspects share one rule gives that rule; rules that differ give none."""
    if rules is None or isinstance(rules, LabelRule):
        return [rules] * size
    if aspects is None:
        shared = set(rules.values())
        return [shared.pop() if len(shared) == 1 else None] * size
    return [rule_for(rules, a) for a in aspects]
