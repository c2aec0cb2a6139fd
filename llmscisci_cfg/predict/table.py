"""The input table of a prediction: the columns it must have, and those a prediction adds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.data.table import Table
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job


@dataclass(frozen=True)
class Inputs:
    """The input table (every row and column, in file order; with ``method.rows: labelled``
    its labelled rows) and the rows this run predicts: all of them, or the first ``--limit``.
    ``unlabelled``: the rows ``method.rows: labelled`` left out (no gold label for any aspect)."""

    table: Table
    rows: list[dict[str, Any]]
    unlabelled: int = 0

    @property
    def limited(self) -> bool:
        """Whether ``--limit`` left rows out (a later ``--resume`` may predict them)."""
        return len(self.rows) < len(self.table.rows)


def read_input(job: Job, limit: int | None) -> Inputs:
    """The source table and its first ``limit`` rows; missing columns are a `UserError` naming
    the file and the recipe key, and so are columns this prediction would write."""
    from llmscisci_cfg.data.labels import join_table
    from llmscisci_cfg.data.sources import column_list
    from llmscisci_cfg.data.table import read_table

    table = join_table(read_table(job.data.require()), job)  # data.labels: every row
    cols = job.columns
    wanted = {"data.columns.id": cols.id}
    wanted |= {f"data.columns.text.{a}": c for a, c in cols.text.items()}
    if job.recipe.method.pool is None and cols.label:
        wanted |= {f"data.columns.label.{a}": c for a, c in cols.label.items()}
    for aspect, columns in (job.recipe.method.answers or {}).items():
        wanted |= {f"method.answers.{aspect}": c for c in columns}
    missing = [
        f"{table.path}: column {c!r} ({key}) not found"
        for key, c in wanted.items()
        if c not in table.columns
    ]
    if missing:
        raise UserError("\n".join(missing) + f"; columns: {column_list(table.columns)}")
    clash = [c for c in output_columns(job) if c in table.columns]
    if clash:
        raise UserError(
            f"{table.path}: already has the column(s) {', '.join(clash)} that this prediction "
            "writes (the output of an earlier predict?); name this run's columns with "
            "--set method.output_prefix=PREFIX_ (e.g. judge_) so nothing is overwritten"
        )
    unlabelled = 0
    if job.recipe.method.rows == "labelled":
        table, unlabelled = _labelled(table, job)
    return Inputs(table, table.rows[:limit] if limit else table.rows, unlabelled)


def _labelled(table: Table, job: Job) -> tuple[Table, int]:
    """The table's rows with a gold label for at least one aspect, and how many were left
    out; none is a `UserError` naming the label columns."""
    from dataclasses import replace

    from llmscisci_cfg.data.examples import cell_text

    columns = [job.recipe.data.label_columns[a] for a in job.aspects]
    rows = [r for r in table.rows if any(cell_text(r.get(c)) for c in columns)]
    if not rows:
        raise UserError(
            f"{table.path}: method.rows is labelled, but no row has a gold label in "
            f"{', '.join(map(repr, dict.fromkeys(columns)))}; set method.rows: all"
        )
    return replace(table, rows=rows), len(table.rows) - len(rows)


def output_columns(job: Job) -> list[str]:
    """The columns a prediction adds to the table (none for rationales: they write traces)."""
    if job.task.kind == "rationale":
        return []
    names = ["pred", "raw", "reason", "truncated"]
    names += ["confidence"] if job.task.kind == "label" else []
    names += ["shots"] if job.recipe.method.shots else []
    prefix = job.recipe.method.output_prefix
    return [f"{prefix}{aspect}_{name}" for aspect in job.aspects for name in names]
