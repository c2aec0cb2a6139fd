"""User-facing errors.

`UserError` is anything the user can fix (recipe, data, arguments): the CLI prints
its message and exits 2, never a traceback. Anything else is a bug and exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One located problem, printed as ``where: key.path: message``.

    ``where`` is ``file:line:col`` for recipe text, or ``--set k=v`` for an override.
    """

    where: str
    path: str
    message: str

    def __str__(self) -> str:
        if self.path:
            return f"{self.where}: {self.path}: {self.message}"
        return f"{self.where}: {self.message}"


class UserError(Exception):
    """A mistake in the user's input. The CLI prints it and exits with code 2."""

    exit_code = 2


class RecipeError(UserError):
    """Every problem found in one recipe, reported together."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
