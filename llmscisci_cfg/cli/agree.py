"""``llmscisci agree``: agreement between label columns of one table.

Imports only click at top level; the table reader and the statistics load when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(group: click.Group) -> None:
    """Add the ``agree`` command to the ``llmscisci`` group."""
    group.add_command(agree)


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="TABLE [TABLE...] [--columns] A B [C...]")
@click.option(
    "--categories",
    metavar="NAME,NAME,...",
    help="Category names in label order, comma-separated, for one-hot lists and codes without "
    "a task. Default: 1..n with n the length of the first one-hot label.",
)
@click.option(
    "--task",
    "task_ref",
    metavar="TASK",
    help="Read the columns with a task's answer kind and codecs (builtin:NAME or a YAML "
    "file): single (categories), multi (one-hot lists, codes, names), dimensions (dicts of "
    "levels).",
)
@click.option(
    "--aspect",
    help="The task's aspect to read. Default: every aspect, each from the columns named with "
    "{aspect} in them (e.g. '{aspect}_coder_a').",
)
@click.option(
    "--id",
    "id_column",
    metavar="COLUMN",
    help="The id column that joins several tables (each id once per table).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (notes go to stderr).")
@click.option(
    "--columns",
    "columns_flag",
    is_flag=True,
    help="Optional marker before the columns (`agree TABLE --columns A B`).",
)
@click.option(
    "--alt-test",
    "model",
    metavar="MODEL_COLUMN",
    help="Run the alternative annotator test instead: may the labels in MODEL_COLUMN replace a "
    "human coder's? COLUMNS are then the human coders (at least 3).",
)
@click.option(
    "--epsilon",
    type=float,
    help="The alt-test's margin for the model (default 0.2). The paper's rule of thumb: 0.2 "
    "when the coders are experts, 0.15 skilled (trained students), 0.1 crowd workers; "
    "smaller when the coders agree little.",
)
def agree(
    args: tuple[str, ...],
    columns_flag: bool,
    categories: str | None,
    task_ref: str | None,
    aspect: str | None,
    id_column: str | None,
    as_json: bool,
    model: str | None,
    epsilon: float | None,
) -> None:
    """Agreement between the label COLUMNS (two or more) of TABLE (.csv, .jsonl, .json,
    .parquet; several tables are joined on --id).

    With --task, columns are read by the task's answer kind, every aspect at once ({aspect}
    in a column name): single labels get Cohen's kappa over the categories (nominal);
    multi-label answers Cohen's kappa per category (yes/no); dimensions per dimension over
    the levels (not present the lowest), with linearly weighted kappa too. Without a task,
    a label is a one-hot list ([1, 0, 1, 0, 0], as a list or as text) or human codes
    ("1, 3"). For each pair of columns: kappa, percent agreement and the confusion table;
    with three or more columns also Fleiss' kappa and Krippendorff's alpha (ordinal for
    levels, nominal otherwise). Rows missing a label, or with an invalid one, are counted and
    left out, never guessed. A kappa that is undefined (both raters constant and equal) is
    null.

    With --alt-test MODEL_COLUMN: the alternative annotator test of Calderon, Reichart and
    Dror (ACL 2025). Each human coder is left out in turn; on the items they labelled, is the
    model at least as close to the other coders as they are, by a one-sided t-test with margin
    epsilon, corrected by Benjamini-Yekutieli (q = 0.05)? The model passes when it wins
    against at least half of the coders. Each coder needs 30 items or more. Alignment: the
    task's kind (single: accuracy; multi: 1 - Hamming distance; dimensions: the share of
    dimensions that agree); without a task, labels may also be plain category names.

    Example: llmscisci agree labels.csv coder_a coder_b model --task builtin:repro_effort --aspect easy

    Example: llmscisci agree a.csv b.csv --id doc --task builtin:repro_effort --columns '{aspect}_a' '{aspect}_b'

    Example: llmscisci agree labels.csv --alt-test gpt4 --columns coder_a coder_b coder_c
    """
    from llmscisci_cfg.data.table import read_table
    from llmscisci_cfg.eval.columns import split_args

    if epsilon is not None and model is None:
        raise click.UsageError("--epsilon needs --alt-test")
    if categories is not None and task_ref is not None:
        raise click.UsageError("give --categories or --task, not both")
    if aspect is not None and task_ref is None:
        raise click.UsageError("--aspect needs --task")
    paths, columns = split_args(args)
    if not paths:
        raise click.UsageError("give a table file first (.csv, .jsonl, .json or .parquet)")
    tables = [read_table(p) for p in paths]
    if task_ref is not None:
        results = _by_task(tables, id_column, columns, task_ref, aspect, model, epsilon)
    else:
        table = _one_table(tables, id_column, [*([model] if model else []), *columns])
        names = _category_names(categories)
        if model is not None:
            from llmscisci_cfg.eval.alttest import DEFAULT_EPSILON, alt_test_table

            eps = DEFAULT_EPSILON if epsilon is None else epsilon
            results = {None: alt_test_table(table, model, columns, names, None, eps)}
        else:
            from llmscisci_cfg.eval.agree import agree as compute

            results = {None: compute(table, columns, names, None)}
    _print(results, as_json)


def _print(results: dict, as_json: bool) -> None:
    """One result as it is; several (one per aspect) under their aspect."""
    if as_json:
        if len(results) == 1:
            click.echo(json.dumps(next(iter(results.values())).as_json()))
        else:
            click.echo(json.dumps({"aspects": {a: r.as_json() for a, r in results.items()}}))
        for aspect, result in results.items():
            for note in result.notes:
                click.echo(f"note: {f'{aspect}: ' if len(results) > 1 else ''}{note}", err=True)
        return
    if len(results) == 1:
        click.echo(next(iter(results.values())).as_text())
        return
    click.echo("\n\n".join(f"== {a}\n{r.as_text()}" for a, r in results.items()))


def _one_table(tables: list, id_column: str | None, columns: list[str]):
    """The table to read without a task: the one given, or the named columns of several
    tables joined on ``id_column``."""
    if len(tables) == 1 and id_column is None:
        return tables[0]
    from llmscisci_cfg.data.table import Table
    from llmscisci_cfg.eval.columns import join

    joined = join(tables, id_column)
    cells = {c: joined.column(c)[0] for c in dict.fromkeys(columns)}
    rows = [{c: cells[c][i] for c in cells} for i in range(joined.n)]
    return Table(tables[0].path, list(cells), rows)


def _by_task(tables, id_column, columns, task_ref, aspect, model, epsilon) -> dict:
    """Agreement (or the alt-test) per aspect, columns read with the task's kinds."""
    from llmscisci_cfg.errors import UserError
    from llmscisci_cfg.eval.columns import decode_columns, join, task_kinds

    _, kinds = task_kinds(task_ref, aspect, Path.cwd())
    joined = join(tables, id_column)
    names = [*([model] if model else []), *columns]
    if model is None and len(columns) < 2:
        raise UserError("agreement needs at least two label columns")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup and model not in dup:
        raise UserError(
            f"column(s) named twice: {', '.join(map(repr, dup))}; the same column of two "
            "tables is named FILE:COLUMN (e.g. a.csv:intent_pred b.csv:intent_pred)"
        )
    decoded = {c: decode_columns(joined, kinds, c, "column") for c in dict.fromkeys(names)}
    out = {}
    for a, kind in kinds.items():
        mine = {decoded[c][a].column: decoded[c][a] for c in dict.fromkeys(names)}
        if model is not None:
            from llmscisci_cfg.eval.alttest import DEFAULT_EPSILON, alt_test_kind

            notes = [
                f"column {d.column!r}: "
                + ", ".join(f"{k} {r}" for r, k in sorted(d.counts().items()))
                + " left out as missing"
                + (f"; first invalid: {d.first_invalid}" if d.first_invalid else "")
                for d in mine.values()
                if d.counts()
            ]
            out[a] = alt_test_kind(
                kind.kind,
                decoded[model][a].column,
                {n: d.values for n, d in mine.items()},
                [decoded[c][a].column for c in columns],
                DEFAULT_EPSILON if epsilon is None else epsilon,
                notes=notes,
            )
        else:
            from llmscisci_cfg.eval.agree import agree_kind

            out[a] = agree_kind(joined.n, kind, mine)
    return out


def _category_names(categories: str | None) -> list[str] | None:
    """Category names from ``--categories``."""
    if categories is None:
        return None
    names = [c.strip() for c in categories.split(",")]
    if len(names) < 2 or not all(names):
        raise click.BadParameter(
            "expected two or more non-empty names separated by commas",
            param_hint="--categories",
        )
    return names
