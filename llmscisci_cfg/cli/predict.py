"""``llmscisci predict``: label, extract, judge or write rationales over a whole table."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llmscisci_cfg.cli.common import INTERRUPTED, device_option, set_option


def register(group: click.Group) -> None:
    group.add_command(predict)


@click.command()
@click.argument("recipe")
@set_option
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write (.csv, .jsonl or .parquet; rationales: .jsonl) [default: "
    "predictions/RECIPE_NAME.jsonl].",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N rows.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted prediction; finished rows are not asked again (refused when "
    "the settings, or what a finished row asks, changed since).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output (or its journal).")
@device_option("a local model runs")
@click.option("--in-process", is_flag=True, hidden=True, help="Worker of a multi-process launch.")
def predict(
    recipe: str,
    overrides: tuple[str, ...],
    output: Path | None,
    limit: int | None,
    resume: bool,
    overwrite: bool,
    device: str,
    in_process: bool,
) -> None:
    """Run RECIPE's task (method: {name: predict}) over every row of its table.

    Writes every input row and column plus, per aspect, <aspect>_pred (the parsed answer),
    <aspect>_raw (the completion), <aspect>_reason (why a section has no prediction) and
    <aspect>_truncated; a rationale task writes traces JSONL instead. The report goes to
    OUTPUT.report.json. Answers are constrained to the task's format (or JSON schema) unless
    generation.structured is false.
    """
    from llmscisci_cfg.predict.runner import PredictOptions
    from llmscisci_cfg.predict.runner import predict as run_predict

    opts = PredictOptions(
        output=output,
        limit=limit,
        resume=resume,
        overwrite=overwrite,
        in_process=in_process,
        device=device,
    )
    try:
        run_predict(recipe, overrides, opts, echo=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        if not in_process:
            again = " ".join(["llmscisci predict", recipe, *[f"--set={o}" for o in overrides]])
            where = f" --output {output}" if output else ""
            click.echo(
                f"interrupted; finished rows are kept: continue with {again}{where} --resume",
                err=True,
            )
        sys.exit(INTERRUPTED)
