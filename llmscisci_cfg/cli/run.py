"""``llmscisci run``, ``export`` and ``reproduce`` (light at import: click only)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llmscisci_cfg import console
from llmscisci_cfg.cli.common import INTERRUPTED, set_option, verbosity_options

METRICS_DIFFER = 3  # `reproduce` exit code when the re-run differs


def register(group: click.Group) -> None:
    group.add_command(run)
    group.add_command(export)
    group.add_command(reproduce)


@click.command()
@click.argument("recipe")
@set_option
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory (default: the recipe's train.output_dir).",
)
@click.option(
    "--resume", is_flag=True, help="Continue the run in the directory from its last checkpoint."
)
@click.option("--overwrite", is_flag=True, help="Delete a non-empty run directory first.")
@click.option("--in-process", is_flag=True, hidden=True, help="Worker of a multi-process launch.")
@verbosity_options
def run(
    recipe: str,
    overrides: tuple[str, ...],
    output_dir: Path | None,
    resume: bool,
    overwrite: bool,
    in_process: bool,
) -> None:
    """Train RECIPE into its run directory; the last line printed is `run directory: PATH`.

    With launch.num_processes > 1 it re-invokes itself through `accelerate launch` (the command
    is printed). A non-empty run directory is refused without --overwrite or --resume.
    Ctrl-C marks the run interrupted and prints the command that resumes it (exit 130).
    """
    from llmscisci_cfg.train.runner import RunFailed, RunInterrupted, world_size
    from llmscisci_cfg.train.runner import run as run_recipe

    worker = in_process and world_size() > 1
    try:
        run_dir = run_recipe(
            recipe, overrides, output_dir, resume, overwrite, in_process, echo=console.info
        )
    except RunFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except RunInterrupted as exc:
        if not worker:
            click.echo(f"interrupted; {exc.hint}", err=True)
        sys.exit(INTERRUPTED)
    if not worker:  # the launching process prints it, last
        click.echo(f"run directory: {run_dir}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--merge", is_flag=True, help="Merge the LoRA adapter into the base weights.")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to save (default: RUN_DIR/exported). Must be empty or absent.",
)
@verbosity_options
def export(run_dir: Path, merge: bool, output: Path | None) -> None:
    """Save RUN_DIR's model + tokenizer (training chat template) as a plain model directory."""
    from llmscisci_cfg.runs.export import export_run

    console.configure_libraries()
    out = export_run(run_dir, merge=merge, output=output)
    click.echo(f"exported: {out}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--keep", is_flag=True, help="Keep the re-run directory (its path is printed).")
@verbosity_options
def reproduce(run_dir: Path, keep: bool) -> None:
    """Re-run RUN_DIR from its recipe.resolved.yaml and diff metrics.jsonl.

    Exit 0 when identical (wall-clock fields ignored), 3 with the differences otherwise
    (2 stays for input mistakes, 1 for internal failures).
    """
    from llmscisci_cfg.train.reproduce import reproduce_run

    result = reproduce_run(run_dir, keep=keep, echo=console.info)
    click.echo(result.as_text())
    sys.exit(0 if result.identical else METRICS_DIFFER)
