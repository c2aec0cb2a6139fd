"""What every ``llmscisci`` command shares: the ``--set`` option and clean user errors.

Light at import (click and the error types only).
"""

from __future__ import annotations

import click

from llmscisci_cfg.errors import STORAGE_ERRORS, RecipeError, UserError

SET_HELP = (
    "Override a recipe value by dotted key, typed by the schema (repeatable): "
    "--set train.learning_rate=1e-5"
)


def set_option(f):
    """``--set KEY=VALUE`` (repeatable), collected into the ``overrides`` argument."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(f)


class _UserFacing(click.ClickException):
    """A `UserError` printed as plain lines on stderr; exit 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(self.message, err=True)


class UserErrorGroup(click.Group):
    """Turns `UserError` into exit 2 with a clean message; other exceptions are bugs (exit 1).

    Located recipe problems print as they are (``file:line:col: key: message``); any other
    user error is prefixed with ``error:``.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            located = isinstance(exc, RecipeError) and all(p.where for p in exc.problems)
            raise _UserFacing(str(exc) if located else f"error: {exc}") from None
        except OSError as exc:
            if exc.errno not in STORAGE_ERRORS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise _UserFacing(f"error: {where}{exc.strerror or exc}") from None
