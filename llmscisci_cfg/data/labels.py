"""Gold labels kept in a second table (``data.labels``), joined to the rows on the id.

Studies often ship the texts and the codings apart: the flourishing data has ``tweets.csv``
(``message_id``, ``tweet_text``) and ``answers.csv`` (``id``, ``answer``). The labels table must
have one row per id (a repeated id is a `UserError` naming both lines); its cells are decoded
later, with the task's answer kind, exactly as label cells of the rows would be. The `Join`
counts what matched: labels without a row (an id no row has) and rows without a label (left
out of training as ``no_label``, and still labelled by ``predict``, which reads every row).

>>> Join(rows=3, labels=2, matched=1, labels_without_row=["7"], rows_without_label=["2", "3"]).summary()["rows_without_label"]
2
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.data.sources import Source, read_source, require_columns
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.task.labels import shown

#: Unmatched ids named in reports (the counts are complete).
SHOWN = 10


@dataclass(frozen=True)
class Labels:
    """The labels table: per id, the label cell of each aspect, and where each id's row is."""

    path: Path
    id_column: str
    columns: dict[str, str]  # aspect -> column of the labels table
    cells: dict[str, dict[str, Any]]  # id -> {aspect: cell}
    lines: dict[str, str]  # id -> file:line

    def where(self, doc: str) -> str:
        return self.lines.get(doc, str(self.path))


def load_labels(job: Job) -> Labels | None:
    """The job's ``data.labels`` table read and checked (None without one): the id and label
    columns exist, every id is non-empty and appears once."""
    spec = job.recipe.data.labels
    if spec is None:
        return None
    assert job.labels is not None
    source = read_source(job.labels.require(), spec.format, "data.labels.path")
    wanted = {"data.labels.id": spec.id}
    wanted |= {f"data.labels.columns.{a}": c for a, c in spec.columns.items()}
    require_columns(source, wanted)
    return _index(source, spec.id, {a: spec.columns[a] for a in job.columns.aspects})


def _index(source: Source, id_column: str, columns: dict[str, str]) -> Labels:
    from llmscisci_cfg.data.examples import cell_text

    table = source.rows.select_columns(list(dict.fromkeys([id_column, *columns.values()])))
    cells: dict[str, dict[str, Any]] = {}
    lines: dict[str, str] = {}
    i = 0
    for batch in table.iter(batch_size=10_000):
        for k, value in enumerate(batch[id_column]):
            doc = cell_text(value)
            where = source.where(i)
            if not doc:
                raise UserError(
                    f"{where}: empty id (column {id_column!r}, data.labels.id); every label row "
                    "needs the id of the row it labels"
                )
            if doc in cells:
                raise UserError(
                    f"{where}: id {shown(doc)} (data.labels.id {id_column!r}) is also the id at "
                    f"{lines[doc]}; the labels table needs one row per id"
                )
            cells[doc] = {a: batch[c][k] for a, c in columns.items()}
            lines[doc] = where
            i += 1
    return Labels(source.path, id_column, columns, cells, lines)


@dataclass
class Join:
    """How the rows and the labels table matched on the id."""

    rows: int  # rows with a non-empty id
    labels: int  # rows of the labels table
    matched: int  # label ids that some row has
    labels_without_row: list[str] = field(default_factory=list)  # every such id
    rows_without_label: list[str] = field(default_factory=list)  # every such id (distinct)

    def summary(self) -> dict[str, Any]:
        """The counts, and the first `SHOWN` unmatched ids of each kind."""
        return {
            "rows": self.rows,
            "labels": self.labels,
            "matched": self.matched,
            "labels_without_row": len(self.labels_without_row),
            "rows_without_label": len(self.rows_without_label),
            "first_labels_without_row": self.labels_without_row[:SHOWN],
            "first_rows_without_label": self.rows_without_label[:SHOWN],
        }


def join_report(labels: Labels, ids: Iterable[Any]) -> Join:
    """Match the rows' ids against the labels table (ids in file order)."""
    from llmscisci_cfg.data.examples import cell_text

    seen: dict[str, None] = {}
    rows = 0
    for value in ids:
        doc = cell_text(value)
        if doc:
            rows += 1
            seen.setdefault(doc)
    without_label = [d for d in seen if d not in labels.cells]
    without_row = [d for d in labels.cells if d not in seen]
    matched = len(labels.cells) - len(without_row)
    return Join(rows, len(labels.cells), matched, without_row, without_label)


def join_table(table: Any, job: Job) -> Any:
    """A `table.Table` with the labels table's label columns added to each row (None where
    the row's id has no label), for `predict`; the table as it is without ``data.labels``.
    A label column the table already has is a `UserError` (which one would be meant?)."""
    labels = load_labels(job)
    if labels is None:
        return table
    from dataclasses import replace

    from llmscisci_cfg.data.examples import cell_text

    clash = [c for c in labels.columns.values() if c in table.columns]
    if clash:
        raise UserError(
            f"{table.path}: already has the column(s) {', '.join(map(repr, clash))} that "
            f"data.labels reads from {labels.path}; rename one of them"
        )
    id_column = job.columns.id
    rows = []
    for row in table.rows:
        found = labels.cells.get(cell_text(row.get(id_column)))
        added = {c: (found or {}).get(a) for a, c in labels.columns.items()}
        rows.append({**row, **added})
    columns = list(table.columns) + [c for c in labels.columns.values() if c not in table.columns]
    return replace(table, columns=columns, rows=rows)
