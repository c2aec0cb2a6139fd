"""User-facing errors, and the one type for a located problem.

`UserError` is anything the user can fix (recipe, data, arguments): the CLI prints its message
and exits 2, never a traceback. Anything else is a bug and exits 1.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import dataclass, replace

Key = tuple[str | int, ...]
#: Errors of the storage we write to (full, read-only, not ours): the user's to fix, not bugs.
STORAGE_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


@dataclass(frozen=True)
class Problem:
    """One problem at a key of the recipe, printed as ``where: key.path: message``.

    ``where`` is ``file:line:col`` for recipe text, ``--set k=v`` for an override, a recipe
    reference, or empty while the problem is not located yet (checks find problems by key;
    the loader locates them).

    >>> str(Problem(("train", "seed"), "must be ≥ 0", "r.yaml:3:9"))
    'r.yaml:3:9: train.seed: must be ≥ 0'
    """

    key: Key
    message: str
    where: str = ""

    @property
    def dotted(self) -> str:
        return ".".join(str(part) for part in self.key)

    def at(self, where: str) -> Problem:
        """The same problem, located at ``where``."""
        return replace(self, where=where)

    def __str__(self) -> str:
        return ": ".join(part for part in (self.where, self.dotted, self.message) if part)


class UserError(Exception):
    """A mistake in the user's input. The CLI prints it and exits with code 2."""

    exit_code = 2


class RecipeError(UserError):
    """Every problem found in one recipe, reported together."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def raise_problems(problems: Iterable[Problem], where: str = "") -> None:
    """Raise one `RecipeError` for ``problems`` (those not located yet are put at ``where``)."""
    problems = [p if p.where else p.at(where) for p in problems]
    if problems:
        raise RecipeError(problems)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
