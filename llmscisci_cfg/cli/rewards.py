"""``llmscisci rewards list`` and ``llmscisci rewards test``.

Imports only click at top level; scoring loads a tokenizer only when a reward needs one.
"""

from __future__ import annotations

from pathlib import Path

import click

from llmscisci_cfg.cli.common import UserErrorGroup


@click.group("rewards", cls=UserErrorGroup)
def rewards() -> None:
    """List the built-in GRPO rewards, or score completions with a reward stack."""


@rewards.command("list")
def list_rewards() -> None:
    """Show each built-in reward: name, what it scores, its range and parameters."""
    from llmscisci_cfg.rewards.registry import BUILTINS

    width = max(len(name) for name in BUILTINS)
    for entry in BUILTINS.values():
        params = ", ".join(f"{k}={v!r}" for k, v in entry.params.items()) or "none"
        reads = f"; reads: {', '.join(entry.reads)}" if entry.reads else ""
        click.echo(f"{entry.name:<{width}}  {entry.description}")
        click.echo(f"{'':<{width}}  range: {entry.value_range}; params: {params}{reads}")
    click.echo(
        "\nplug-ins: name: package.module:function or path/to/file.py:function (relative to the recipe)"
    )


@rewards.command("test")
@click.argument("recipe", required=False)
@click.option(
    "--completions",
    "completions",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL, one object per line: completion (text or messages), gold, any column a reward reads.",
)
@click.option(
    "--reward",
    "names",
    multiple=True,
    metavar="NAME",
    help="Score with this reward only (repeatable). Without RECIPE: built-in names; default all six.",
)
@click.option(
    "--group-size",
    type=click.IntRange(min=1),
    help="Completions per GRPO group, in file order. Default: the recipe's num_generations, "
    "else the whole file is one group.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One line per completion: {"index", "rewards", "total"}.',
)
def test_rewards(
    recipe: str | None,
    completions: Path,
    names: tuple[str, ...],
    group_size: int | None,
    as_json: bool,
) -> None:
    """Score completions with RECIPE's reward stack, or with built-ins on the default task.

    Prints each reward, the weighted total, and the mean and std of the total per group,
    warning about groups with zero variance (GRPO learns nothing from them).
    """
    from llmscisci_cfg.eval.rewards_test import format_table, run_test

    report = run_test(completions, recipe, names, group_size)
    if as_json:
        for line in report.json_lines():
            click.echo(line)
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        if report.zero_variance_groups:
            click.echo(
                f"warning: {len(report.zero_variance_groups)} groups have zero reward variance",
                err=True,
            )
    else:
        click.echo(format_table(report))


def register(group: click.Group) -> None:
    """Add the ``rewards`` command group to ``group``."""
    group.add_command(rewards)
