"""Label columns of one or several tables, joined on an id column, expanded per aspect and
decoded by the task's codecs: what ``score`` and ``agree`` read.

**Joining.** With one table, each row is its own unit (``row 1``, …), or, with an id column
(``--id``), rows with the same id are one unit (they move together in the bootstrap: a
paper's citations, say). Several tables are joined on the id column: every table must have
it, an id may appear once per table (a repeat is a `UserError` naming both lines), and the
joined rows are every id of any table, in first-seen order (the first table's first); a table
without a row for an id gives missing cells.

**Column names.** A plain name must be in exactly one table (the id column aside); a name in
several tables is written ``FILE:COLUMN`` (the file's name or stem). ``{aspect}`` in a name
stands for each aspect of the task (``{aspect}_pred`` reads ``easy_pred`` and
``difficult_pred``): every aspect is scored at once. Without ``{aspect}``, a task with several
aspects needs ``--aspect``.

**Cells** are decoded with the aspect's answer kind (`LabelKind.decode_gold`: names, codes,
one-hot lists, dict strings). A cell that does not decode is never guessed: it is
``missing`` (null, NaN, or no row for that id), ``empty`` (blank text, ``[]``) or ``invalid``
(does not decode; the first one is quoted with its file and line). An empty cell is never a
coding, gold or not (a CSV writes a missing value as an empty cell); ``{}`` codes no dimension.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmscisci_cfg.data.table import Table
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.task.kinds import LabelKind
from llmscisci_cfg.task.labels import LabelError

ASPECT = "{aspect}"
TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


@dataclass(frozen=True)
class Joined:
    """The rows of one or several tables joined on ``id_column`` (None: one table, by row)."""

    tables: tuple[Table, ...]
    id_column: str | None
    ids: tuple[str, ...]  # each joined row's unit (repeats only within one table)
    rows: tuple[tuple[int | None, ...], ...]  # per table: the row index of each id, or None

    @property
    def n(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> tuple[list[Any], Callable[[int], str]]:
        """The cells of column ``name`` (`resolve`), one per id, and a function giving where
        the ``i``-th one is (``FILE:LINE``, for messages)."""
        t, column = self.resolve(name)
        table = self.tables[t]
        rows = self.rows[t]
        cells = [None if row is None else table.rows[row][column] for row in rows]

        def where(i: int) -> str:
            if rows[i] is None:
                return f"{table.path}: no row for id {self.ids[i]!r}"
            return table.where(rows[i])

        return cells, where

    def resolve(self, name: str) -> tuple[int, str]:
        """(table index, column) of ``name``: a plain column of exactly one table, or
        ``FILE:COLUMN``."""
        found = [(t, name) for t, table in enumerate(self.tables) if name in table.columns]
        found = [(t, c) for t, c in found if c != self.id_column or len(self.tables) == 1]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = " and ".join(str(self.tables[t].path.name) for t, _ in found)
            raise UserError(
                f"column {name!r} is in {names}; name one as FILE:COLUMN, e.g. "
                f"{self.tables[found[0][0]].path.name}:{name}"
            )
        if ":" in name:
            file, _, column = name.rpartition(":")
            for t, table in enumerate(self.tables):
                if file in (table.path.name, table.path.stem, str(table.path)):
                    if column in table.columns:
                        return t, column
                    raise UserError(_no_column(table, column))
        every = [c for table in self.tables for c in table.columns]
        if len(self.tables) == 1:
            raise UserError(_no_column(self.tables[0], name))
        close = difflib.get_close_matches(name, every, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"no column {name!r} in {', '.join(str(t.path) for t in self.tables)}{hint}"
        )


def _no_column(table: Table, name: str) -> str:
    close = difflib.get_close_matches(name, table.columns, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{table.path}: no column {name!r}{hint}; columns: {', '.join(table.columns)}"


def join(tables: Sequence[Table], id_column: str | None) -> Joined:
    """Join ``tables`` on ``id_column`` (module docstring); one table may go without one."""
    tables = tuple(tables)
    if id_column is None:
        if len(tables) > 1:
            raise UserError(
                f"{len(tables)} tables: name the column that joins them with --id (a document "
                "or row id every table has)"
            )
        n = len(tables[0].rows)
        return Joined(tables, None, tuple(f"row {i + 1}" for i in range(n)), (tuple(range(n)),))
    if len(tables) == 1:  # no join: the id names each row's unit, and may repeat
        table = tables[0]
        if id_column not in table.columns:
            raise UserError(_no_column(table, id_column) + " (the --id column)")
        keys = []
        for i, row in enumerate(table.rows):
            key = _id(row[id_column])
            if key is None:
                raise UserError(f"{table.where(i)}: empty id in column {id_column!r}")
            keys.append(key)
        return Joined(tables, id_column, tuple(keys), (tuple(range(len(keys))),))
    order: dict[str, None] = {}
    per_table = []
    for table in tables:
        if id_column not in table.columns:
            raise UserError(_no_column(table, id_column) + " (the --id column)")
        seen: dict[str, int] = {}
        for i, row in enumerate(table.rows):
            key = _id(row[id_column])
            if key is None:
                raise UserError(f"{table.where(i)}: empty id in column {id_column!r}")
            if key in seen:
                raise UserError(
                    f"{table.where(i)}: id {key!r} repeats ({table.where(seen[key])}); each id "
                    "once per table"
                )
            seen[key] = i
            order.setdefault(key)
        per_table.append(seen)
    ids = tuple(order)
    rows = tuple(tuple(seen.get(k) for k in ids) for seen in per_table)
    return Joined(tables, id_column, ids, rows)


def _id(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def expand(template: str, aspects: Sequence[str], what: str) -> dict[str, str]:
    """``{aspect: column}`` of a column name: ``{aspect}`` replaced by each aspect, or one
    aspect's name as given (``what`` names the option in messages)."""
    if ASPECT in template:
        return {a: template.replace(ASPECT, a) for a in aspects}
    if len(aspects) != 1:
        raise UserError(
            f"{what} {template!r}: the task has aspects {', '.join(aspects)}; write {ASPECT} "
            f"in the column name (e.g. {ASPECT}_{template}) to read each, or pick one with --aspect"
        )
    return {aspects[0]: template}


# ----------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Decoded:
    """One column's cells of one aspect: the values (None where none) and why not."""

    column: str
    values: list[Any]
    reasons: list[str | None]  # None, "missing", "empty" or "invalid"
    first_invalid: str | None = None  # "FILE:LINE: message" of the first invalid cell

    def counts(self) -> dict[str, int]:
        """How many cells are missing, empty or invalid."""
        return dict(Counter(r for r in self.reasons if r is not None))

    @property
    def answered(self) -> list[bool]:
        """Whether each cell holds an answer (valid or not): neither missing nor empty."""
        return [r not in ("missing", "empty") for r in self.reasons]


def blank(cell: Any) -> str | None:
    """``missing`` for null and NaN, ``empty`` for blank text and empty lists, else None."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return "missing"
    if (isinstance(cell, str) and not cell.strip()) or (
        isinstance(cell, (list, tuple)) and not cell
    ):
        return "empty"  # {} is an answer: no dimension present
    return None


def decode(
    kind: LabelKind,
    column: str,
    cells: Sequence[Any],
    where: Callable[[int], str],
) -> Decoded:
    """Each cell of ``column`` as a value of ``kind`` (lists for sequences, as JSON has them),
    or None with the reason (module docstring)."""
    values: list[Any] = []
    reasons: list[str | None] = []
    first = None
    seen: dict[Any, tuple[Any, str | None, str | None]] = {}  # a table repeats its labels
    for i, cell in enumerate(cells):
        key = cell if isinstance(cell, (str, int)) and not isinstance(cell, bool) else None
        if key is not None and key in seen:
            value, reason, message = seen[key]
            values.append(value)
            reasons.append(reason)
            first = first or (message and f"{where(i)}: {message}")
            continue
        value, reason, message = _decode_cell(kind, cell)
        if key is not None:
            seen[key] = (value, reason, message)
        values.append(value)
        reasons.append(reason)
        first = first or (message and f"{where(i)}: {message}")
    return Decoded(column, values, reasons, first)


def _decode_cell(kind: LabelKind, cell: Any) -> tuple[Any, str | None, str | None]:
    """(value, reason, error message) of one cell."""
    reason = blank(cell)
    if reason is not None:
        return None, reason, None
    try:
        value = kind.decode_gold(cell)
    except LabelError as exc:
        return None, "invalid", str(exc)
    return (list(value) if isinstance(value, tuple) else value), None, None


def decode_columns(
    joined: Joined, kinds: Mapping[str, LabelKind], template: str, what: str
) -> dict[str, Decoded]:
    """``{aspect: Decoded}`` of the column ``template`` (`expand`) over the joined rows; a
    column none of whose present cells decodes is a `UserError` (wrong task or aspect?)."""
    out = {}
    for aspect, name in expand(template, list(kinds), what).items():
        cells, where = joined.column(name)
        found = decode(kinds[aspect], name, cells, where)
        counts = found.counts()
        if counts.get("invalid") and not any(r is None for r in found.reasons):
            raise UserError(
                f"none of the {counts['invalid']} labels in column {name!r} decode as "
                f"{kinds[aspect].kind} answers of aspect {aspect!r}; first: {found.first_invalid}"
                "; is it the right task (--task) and aspect?"
            )
        if not any(r is None for r in found.reasons):
            raise UserError(f"column {name!r} holds no label ({_counts_text(counts)})")
        out[aspect] = found
    return out


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "none"


def split_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Positional arguments as (tables, columns): the leading ones whose names end in a
    table extension are tables, the rest columns.

    >>> split_args(["a.csv", "b.jsonl", "gpt4", "llama"])
    (['a.csv', 'b.jsonl'], ['gpt4', 'llama'])
    """
    tables: list[str] = []
    for arg in args:
        if not arg.lower().endswith(TABLE_SUFFIXES):
            break
        tables.append(arg)
    return tables, list(args[len(tables) :])


def task_kinds(ref: str, aspect: str | None, base_dir: Path) -> tuple[str, dict[str, LabelKind]]:
    """The task's name and the answer kinds of the aspects to read: ``aspect`` alone, or
    every aspect (a `UserError` naming the aspects when ``aspect`` is not one)."""
    from llmscisci_cfg.task.spec import load_task

    task = load_task(ref, base_dir)
    if task.kind not in ("label", "rationale"):
        raise UserError(
            f"task {task.name!r} has kind {task.kind}; score and agree read label answers "
            "(a task with kind label or rationale)"
        )
    if aspect is not None and aspect not in task.aspects:
        raise UserError(
            f"task {task.name!r} has no aspect {aspect!r}; aspects: {', '.join(task.aspects)}"
        )
    names = [aspect] if aspect is not None else list(task.aspects)
    return task.name, {a: task.label_kind(a) for a in names}
