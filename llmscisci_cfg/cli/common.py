"""What the ``llmscisci`` commands share: ``--set``, ``--quiet``/``--verbose``, clean user errors.

Light at import (click, `console` and the error types only).
"""

from __future__ import annotations

import click

from llmscisci_cfg import console
from llmscisci_cfg.errors import STORAGE_ERRORS, RecipeError, UserError

SET_HELP = (
    "Override a recipe value by dotted key, typed by the schema (repeatable): "
    "--set train.learning_rate=1e-5"
)


def device_option(what: str):
    """``--device auto|cpu|cuda`` (auto: CUDA when present); ``what`` ends the help text."""
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help=f"Where {what}; 'auto' is CUDA when present.",
    )


def set_option(f):
    """``--set KEY=VALUE`` (repeatable), collected into the ``overrides`` argument."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(f)


def _verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """Record the flag; once both flags are parsed, set the command's console level."""
    chosen = ctx.meta.setdefault("llmscisci.verbosity", {})
    chosen[param.name] = value
    if len(chosen) < 2:
        return
    if chosen["quiet"] and chosen["verbose"]:
        raise click.UsageError("--quiet and --verbose exclude each other")
    name = "quiet" if chosen["quiet"] else "verbose" if chosen["verbose"] else None
    console.set_level(name or console.inherited())


def verbosity_options(f):
    """``-q/--quiet`` and ``-v/--verbose``: how much the command prints (see `console`)."""
    f = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_verbosity,
        help="Also print everything the libraries print (loggers, progress bars, TRL's logs).",
    )(f)
    return click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_verbosity,
        help="Print only warnings, errors and the final lines (default: one progress line "
        f"per stage; ${console.ENV}=quiet|normal|verbose sets another).",
    )(f)


class _UserFacing(click.ClickException):
    """A `UserError` printed as plain lines on stderr; exit 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(self.message, err=True)


#: Ctrl-C, as shells report SIGINT.
INTERRUPTED = 130


class UserErrorGroup(click.Group):
    """Turns `UserError` into exit 2 with a clean message; other exceptions are bugs (exit 1).

    Located recipe problems print as they are (``file:line:col: key: message``); any other
    user error is prefixed with ``error:``. Ctrl-C in a command that does not say more itself
    (`run` and `predict` print how to continue) is exit 130, as shells report SIGINT.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(INTERRUPTED)
        except UserError as exc:
            located = isinstance(exc, RecipeError) and all(p.where for p in exc.problems)
            raise _UserFacing(str(exc) if located else f"error: {exc}") from None
        except OSError as exc:
            if exc.errno not in STORAGE_ERRORS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise _UserFacing(f"error: {where}{exc.strerror or exc}") from None
