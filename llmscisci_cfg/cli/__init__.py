"""The ``llmscisci`` command line.

This module and the ``cli_*`` modules it registers import only light modules at
top level: ``--help``, ``validate``, ``plan`` and ``schema`` never load torch, trl,
peft, transformers, bitsandbytes, accelerate or datasets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from llmscisci_cfg.cli import data as cli_data
from llmscisci_cfg.cli import eval as cli_eval
from llmscisci_cfg.cli import rewards as cli_rewards
from llmscisci_cfg.cli import run as cli_run
from llmscisci_cfg.cli.common import UserErrorGroup, set_option
from llmscisci_cfg.errors import RecipeError, UserError


@click.group(cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmscisci_cfg", prog_name="llmscisci")
def main() -> None:
    """Declarative fine-tuning (SFT, DPO, GRPO) of LLMs for scientometrics labelling.

    Write a YAML recipe, check it with `validate`, inspect it with `plan`, train with `run`,
    measure with `eval`. Every recipe field is documented in the JSON schema (`schema`).
    """


@main.command()
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
    from llmscisci_cfg.recipe.loader import load_recipe

    failed = 0
    for ref in recipes:
        try:
            recipe = load_recipe(ref, overrides)
        except UserError as exc:
            failed += 1
            click.echo(str(exc) if isinstance(exc, RecipeError) else f"{exc}", err=True)
            continue
        machine = checks.machine_problems(recipe) if here else []
        for path, message in machine:
            click.echo(f"{ref}: {'.'.join(map(str, path))}: {message}", err=True)
        failed += bool(machine)
        if not machine:
            click.echo(f"ok: {ref} ({recipe.method.name}, {recipe.model.name_or_path})")
    if len(recipes) > 1:
        click.echo(f"{len(recipes) - failed} of {len(recipes)} recipes valid")
    if failed:
        sys.exit(2)


@main.command()
@click.argument("recipe")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def plan(recipe: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Print the resolved recipe, the TRL configs it compiles to and the launch command. Loads no model."""
    from llmscisci_cfg.train.plan import make_plan

    result = make_plan(recipe, overrides)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.as_text())


@main.command()
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
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")


for _module in (cli_data, cli_rewards, cli_run, cli_eval):
    _module.register(main)


if __name__ == "__main__":
    main()
