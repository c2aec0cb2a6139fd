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
@click.argument("table", type=click.Path(path_type=Path))
@click.argument("columns", nargs=-1, required=True)
@click.option(
    "--categories",
    metavar="NAME,NAME,...",
    help="Category names in label order, comma-separated. Default: from --task, else 1..n "
    "with n the length of the first one-hot label.",
)
@click.option(
    "--task",
    "task_ref",
    metavar="TASK",
    help="Take the categories and human codes from a task: builtin:repro_effort or a YAML file.",
)
@click.option("--aspect", help="The task's aspect (easy, difficult); needed when it has several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (notes go to stderr).")
@click.option(
    "--columns",
    "columns_flag",
    is_flag=True,
    help="Optional marker before the columns (`agree TABLE --columns A B`, as DESIGN.md writes it).",
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
    table: Path,
    columns: tuple[str, ...],
    columns_flag: bool,
    categories: str | None,
    task_ref: str | None,
    aspect: str | None,
    as_json: bool,
    model: str | None,
    epsilon: float | None,
) -> None:
    """Agreement between the label COLUMNS (two or more) of TABLE (.csv, .jsonl, .json, .parquet).

    A label is a one-hot list ([1, 0, 1, 0, 0], as a list or as text) or human codes ("1, 3").
    Per category: Cohen's kappa, percent agreement and the 2x2 table for each pair of
    columns; with three or more columns also Fleiss' kappa and Krippendorff's alpha.
    Rows missing a label, or with an invalid one, are counted and left out, never guessed.
    A kappa that is undefined (both raters constant and equal) is null.

    With --alt-test MODEL_COLUMN: the alternative annotator test of Calderon, Reichart and
    Dror (ACL 2025). Each human coder is left out in turn; on the items they labelled, is the
    model at least as close to the other coders as they are, by a one-sided t-test with margin
    epsilon, corrected by Benjamini-Yekutieli (q = 0.05)? The model passes when it wins
    against at least half of the coders. Each coder needs 30 items or more. Labels may also be
    plain category names (single label: accuracy); one-hot lists use 1 - Hamming distance,
    lists of levels the share of dimensions that agree.

    Example: llmscisci agree labels.csv coder_a coder_b model --task builtin:repro_effort --aspect easy

    Example: llmscisci agree labels.csv --alt-test gpt4 --columns coder_a coder_b coder_c
    """
    from llmscisci_cfg.data.table import read_table

    if epsilon is not None and model is None:
        raise click.UsageError("--epsilon needs --alt-test")
    names, codes = _categories(categories, task_ref, aspect)
    if model is not None:
        from llmscisci_cfg.eval.alttest import DEFAULT_EPSILON, alt_test_table

        eps = DEFAULT_EPSILON if epsilon is None else epsilon
        result = alt_test_table(read_table(table), model, columns, names, codes, eps)
    else:
        from llmscisci_cfg.eval.agree import agree as compute

        result = compute(read_table(table), columns, names, codes)
    if as_json:
        click.echo(json.dumps(result.as_json()))
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
    else:
        click.echo(result.as_text())


def _categories(
    categories: str | None, task_ref: str | None, aspect: str | None
) -> tuple[list[str] | None, dict[str, int] | None]:
    """Category names and human codes from ``--categories`` or ``--task``/``--aspect``."""
    if categories is not None and task_ref is not None:
        raise click.UsageError("give --categories or --task, not both")
    if aspect is not None and task_ref is None:
        raise click.UsageError("--aspect needs --task")
    if categories is not None:
        names = [c.strip() for c in categories.split(",")]
        if len(names) < 2 or not all(names):
            raise click.BadParameter(
                "expected two or more non-empty names separated by commas",
                param_hint="--categories",
            )
        return names, None
    if task_ref is None:
        return None, None
    from llmscisci_cfg.errors import UserError
    from llmscisci_cfg.task.spec import load_task

    task = load_task(task_ref, Path.cwd())
    if aspect is None and len(task.aspects) == 1:
        aspect = next(iter(task.aspects))
    if aspect not in task.aspects:
        given = "no --aspect" if aspect is None else f"no aspect {aspect!r}"
        raise UserError(f"task {task.name!r} has {given}; aspects: {', '.join(task.aspects)}")
    spec = task.aspects[aspect]
    return list(spec.categories), spec.code_index()
