"""``llmscisci validate``, ``plan`` and ``schema``: the recipe commands (no ML library loads)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from llmscisci_cfg.cli.common import set_option
from llmscisci_cfg.errors import UserError


def register(group: click.Group) -> None:
    group.add_command(validate)
    group.add_command(plan)
    group.add_command(schema)


@click.command()
@click.argument("recipes", nargs=-1, required=True)
@click.option(
    "--here", is_flag=True, help="Also check that this machine can run them (CUDA for 4-bit, ...)."
)
@set_option
def validate(recipes: tuple[str, ...], here: bool, overrides: tuple[str, ...]) -> None:
    """Check recipes; print every error as file:line:col: key.path: message.

    Exit 0 when all are valid, 2 otherwise. Loads no model, data or ML library.
    """
    from llmscisci_cfg.recipe import checks
    from llmscisci_cfg.recipe.loader import load_job

    failed = 0
    for ref in recipes:
        try:
            job = load_job(ref, overrides)
        except UserError as exc:
            failed += 1
            click.echo(str(exc), err=True)
            continue
        machine = checks.machine_problems(job.recipe, job.cuda) if here else []
        for problem in machine:
            click.echo(str(problem.at(ref)), err=True)
        failed += bool(machine)
        if not machine:
            click.echo(f"ok: {ref} ({job.method}, {job.model.name})")
    if len(recipes) > 1:
        click.echo(f"{len(recipes) - failed} of {len(recipes)} recipes valid")
    if failed:
        sys.exit(2)


@click.command()
@click.argument("recipe")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--here",
    is_flag=True,
    help="Compare the peak-memory estimate with this machine's GPU (nvidia-smi).",
)
def plan(recipe: str, overrides: tuple[str, ...], as_json: bool, here: bool) -> None:
    """Print the resolved recipe, the TRL configs it compiles to, the peak-memory estimate and
    the launch command. Loads no model."""
    from llmscisci_cfg import make_plan

    result = make_plan(recipe, overrides, here=here)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.as_text())


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
def schema(output: Path | None) -> None:
    """Write the recipe JSON Schema (schemas/recipe.schema.json is this output)."""
    from llmscisci_cfg.recipe.schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        from llmscisci_cfg.files import write_text

        write_text(output, text, "schema -o")
        click.echo(f"wrote {output}")
