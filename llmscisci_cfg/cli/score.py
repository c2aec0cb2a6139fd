"""``llmscisci score``: prediction columns of any table against a gold column, by answer kind.

Imports only click at top level; the tables and the statistics load when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(group: click.Group) -> None:
    """Add the ``score`` command to the ``llmscisci`` group."""
    group.add_command(score)


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="TABLE [TABLE...] [--columns] C1 [C2...]")
@click.option(
    "--task",
    "task_ref",
    required=True,
    metavar="TASK",
    help="The task whose answer kind and categories the columns hold: builtin:NAME or a task "
    "YAML file.",
)
@click.option(
    "--aspect",
    help="Score one aspect of the task. Default: every aspect, each read from the columns "
    "named with {aspect} in them (e.g. --gold '{aspect}' --columns '{aspect}_pred').",
)
@click.option("--gold", required=True, metavar="COLUMN", help="The column of gold labels.")
@click.option(
    "--id",
    "id_column",
    metavar="COLUMN",
    help="The id column that joins several tables (each id once per table); with one table, "
    "the unit the bootstrap resamples [default: the row].",
)
@click.option(
    "--columns",
    "columns_flag",
    is_flag=True,
    help="Optional marker before the prediction columns.",
)
@click.option(
    "--resamples",
    type=click.IntRange(min=100),
    default=1000,
    show_default=True,
    help="Bootstrap resamples.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The bootstrap's seed.")
@click.option(
    "--interval",
    "method",
    type=click.Choice(["bca", "percentile"]),
    default="bca",
    show_default=True,
    help="Bootstrap interval method (bench/RESULTS.md: their coverage).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def score(
    args: tuple[str, ...],
    task_ref: str,
    aspect: str | None,
    gold: str,
    id_column: str | None,
    columns_flag: bool,
    resamples: int,
    seed: int,
    method: str,
    as_json: bool,
) -> None:
    """Score prediction COLUMNS of TABLE (.csv, .jsonl, .json, .parquet; several tables are
    joined on --id) against the --gold column, by the task's answer kind.

    Cells are decoded with the task's codecs (names, codes, one-hot lists, dicts of
    levels); an empty, missing or invalid answer counts as wrong and is counted, never
    guessed. Per column: the kind's metrics (single: accuracy, macro/micro/weighted
    precision, recall and F1 over the categories with gold support; multi: also Hamming
    loss and Jaccard; dimensions: dimension and intensity accuracy, FN/FP rates, Jaccard,
    per-dimension F1), per-class scores and a confusion table, each with a 95% bootstrap
    interval. Every pair of columns, on the rows both answered: the accuracy difference with
    McNemar's exact test and the macro-F1 difference with a paired bootstrap interval.

    Example: llmscisci score preds.csv --task builtin:citation_intent --gold label --columns gpt4 llama

    Example: llmscisci score gold.csv gpt4.jsonl --id doc --task builtin:repro_effort --gold '{aspect}' --columns 'gpt4.jsonl:{aspect}_pred'
    """
    from llmscisci_cfg.data.table import read_table
    from llmscisci_cfg.eval.columns import join, split_args, task_kinds
    from llmscisci_cfg.eval.score import score as compute

    tables, columns = split_args(args)
    if not tables:
        raise click.UsageError("give a table file first (.csv, .jsonl, .json or .parquet)")
    if not columns:
        raise click.UsageError("give one or more prediction columns after the table(s)")
    _, kinds = task_kinds(task_ref, aspect, Path.cwd())
    joined = join([read_table(t) for t in tables], id_column)
    result = compute(joined, kinds, gold, columns, resamples, seed, method)
    if as_json:
        click.echo(json.dumps(result.as_json()))
        for w in result.warnings:
            click.echo(f"warning: {w['message']}", err=True)
    else:
        click.echo(result.as_text())
