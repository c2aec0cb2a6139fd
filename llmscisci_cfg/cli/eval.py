"""``llmscisci eval``: the trained policy against the reference model on the held-out split.

Light at import (click and the error type only); the work happens in `llmscisci_cfg.eval.evaluate`.
"""

from __future__ import annotations

from pathlib import Path

import click

from llmscisci_cfg import console
from llmscisci_cfg.cli.common import device_option, verbosity_options
from llmscisci_cfg.errors import UserError


@click.command("eval")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "--reference",
    "references",
    is_flag=False,
    flag_value="reference",
    multiple=True,
    metavar="[base|DIR]",
    help="Also evaluate a reference, compared with the policy; repeat for several. Alone: the "
    "recipe's model (untrained for SFT); base: the untrained model at the root of the recipe "
    "chain (GRPO after SFT: SFT's base); DIR: a run directory or a model directory.",
)
@click.option("--split", default="test", show_default=True, help="Dataset split to evaluate.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the files [default: RUN_DIR/eval, or eval/RECIPE_NAME/MODEL].",
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    help="Tokens generated per answer: generation.max_new_tokens [default: the recipe's, "
    "else GRPO's max_completion_length, else 256 for labels].",
)
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first K examples.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Prompts generated together: generation.batch_size [default: the recipe's, 16]; "
    "lower it if memory runs out.",
)
@device_option("to generate")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace another evaluation's files in --output-dir (refused otherwise).",
)
@click.option(
    "--recipe", "recipe_ref", help="Evaluate without a run: the held-out split of this recipe."
)
@click.option(
    "--model",
    "model_name",
    help="With --recipe: the model to evaluate zero-shot (hub id, directory or builtin:NAME) "
    "[default: the recipe's base model].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value: any with --recipe; generation.* (how the model generates: "
    "backend, sampling, structured, …) for a run directory.",
)
@verbosity_options
def eval_command(
    run_dir: Path | None,
    references: tuple[str, ...],
    split: str,
    output_dir: Path | None,
    max_new_tokens: int | None,
    limit: int | None,
    batch_size: int | None,
    device: str,
    overwrite: bool,
    recipe_ref: str | None,
    model_name: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Generate on the held-out split with RUN_DIR's final model (and each --reference), then
    write predictions.jsonl, report.json, report.md and a plot.

    Without a run: `eval --recipe RECIPE --model NAME_OR_DIR` gives the in-context zero-shot
    result of any model on the recipe's held-out split. Generation follows the recipe's
    `generation` section (as predict and serve do): greedy and constrained to the task's
    answer grammar by default. Metrics follow the task's answer kind (single, multi,
    dimensions), with 95% bootstrap intervals; an invalid or missing answer counts as wrong.
    """
    if (run_dir is None) == (recipe_ref is None):
        hint = ""
        if run_dir is None and any(r not in ("reference", "base") for r in references):
            hint = "; --reference takes a value, so write RUN_DIR before it"
        raise UserError(
            f"give either RUN_DIR or --recipe RECIPE (with --model NAME_OR_DIR), not both{hint}"
        )
    if recipe_ref is None and model_name:
        raise UserError("--model goes with --recipe; a run's model is its final/")
    console.configure_libraries()
    from llmscisci_cfg.eval import adequacy, evaluate
    from llmscisci_cfg.eval import report as eval_report

    overrides = overrides + tuple(
        f"generation.{key}={value}"
        for key, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size))
        if value is not None
    )
    opts = evaluate.EvalOptions(
        split=split,
        references=references,
        limit=limit,
        output_dir=output_dir,
        device=device,
        overwrite=overwrite,
        overrides=overrides,
    )
    if run_dir is not None:
        result = evaluate.evaluate_run(run_dir, opts)
    else:
        from llmscisci_cfg.recipe.loader import load_job

        result = evaluate.evaluate_model(load_job(recipe_ref, overrides), model_name, opts)
    rep = result.report
    n = rep[eval_report.models(rep)[0]]["overall"]["n"]
    if result.meta.test_set_sha256:  # equal values: reports on the same examples, comparable
        click.echo(f"test set sha256: {result.meta.test_set_sha256}")
    for line in adequacy.console_lines(rep["warnings"]):
        console.warn(line)
    click.echo(
        f"\n{split} split, {n} examples ({rep['kind']} answers; an invalid answer counts as "
        f"wrong; 95% {eval_report.stats_method_text(rep['bootstrap']['method'])} intervals):"
    )
    click.echo(eval_report.summary_table(rep))
    click.echo(f"report: {result.output_dir / eval_report.REPORT_MD}")


def register(group: click.Group) -> None:
    group.add_command(eval_command)
