"""Whole tables in and out by extension: CSV, JSON Lines / JSON, Parquet.

Every column is kept, in file order, and so is the row order. CSV cells are text exactly as
written (no NA guessing: ``"NA"`` and ``""`` stay text); JSON and Parquet keep their types
(lists stay lists, a JSON ``null`` or a Parquet null is None). A key missing from a JSON row
reads as None. Writing is atomic (a temporary file beside the target, then `os.replace`), and
a list or dict cell is written to CSV as JSON text.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp()) / "t.csv"
>>> _ = write_table(out, [{"id": 1, "label": [1, 0]}], ["id", "label"])
>>> read_table(out).rows
[{'id': '1', 'label': '[1, 0]'}]

Every mistake a user can make (missing, empty, garbled, non-UTF-8 or oversized file, a FIFO
or device, an unknown extension) is a `UserError` naming the file, and the line where it can.
An empty table (no data rows) is a mistake too. Light at import: pyarrow loads only for
Parquet.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmscisci_cfg.data.sources import jsonl_records, parse_csv
from llmscisci_cfg.errors import UserError, first_line
from llmscisci_cfg.files import plain_mode
from llmscisci_cfg.recipe.yamlio import decode

#: Files larger than this are refused before they are read (tables are read whole).
MAX_BYTES = 2 * 1024**3

FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class Table:
    """The rows of one file, every column kept, in file order."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: tuple[int, ...] | None = None  # first file line of each row (CSV, JSON Lines)

    def where(self, index: int) -> str:
        """``file:LINE`` of row ``index`` (0-based), or ``file: row N`` when lines are unknown."""
        if self.lines is not None and index < len(self.lines):
            return f"{self.path}:{self.lines[index]}"
        return f"{self.path}: row {index + 1}"

    def column(self, name: str) -> list[Any]:
        """The values of column ``name``, one per row."""
        return [row[name] for row in self.rows]


def table_format(path: Path) -> str:
    """``csv``, ``jsonl``, ``json`` or ``parquet`` from the extension, or a `UserError`."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(FORMATS)
        raise UserError(f"{path}: unknown table extension {path.suffix!r}; use one of {known}")
    return fmt


def read_table(path: str | Path) -> Table:
    """Read a whole table; a `UserError` names the file (and line) of any problem."""
    path = Path(path)
    fmt = table_format(path)
    _check_readable(path)
    if fmt == "parquet":
        return _read_parquet(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise UserError(f"{path}: the file is empty")
    text = decode(raw, str(path))
    if fmt == "csv":
        header, records, lines = parse_csv(text, path)
        return Table(
            path, header, [dict(zip(header, r, strict=True)) for r in records], tuple(lines)
        )
    if fmt == "json" and text.lstrip().startswith("["):
        return _from_records(path, _json_array(text, path), None)
    try:
        located = jsonl_records(text, path)
    except UserError:
        if fmt == "json" and _one_document(text):
            raise UserError(
                f"{path}: one JSON document that is not an array; a JSON table is an array "
                "of objects or one object per line (JSON Lines)"
            ) from None
        raise
    return _from_records(path, [r for _, r in located], tuple(n for n, _ in located))


def write_table(
    path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` to ``path`` atomically, in the format its extension names.

    ``columns`` is what is written, in that order (a key a row lacks is written as empty /
    null; keys not named are left out); None takes every key, in first-seen order. ``.json``
    is written as one JSON array, ``.jsonl`` one object per line. Returns ``path``.
    """
    path = Path(path)
    fmt = table_format(path)
    rows = list(rows)
    columns = list(columns) if columns is not None else _keys(rows)
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise UserError(f"{path}: columns repeat: {', '.join(map(repr, dup))}")
    if path.is_dir():
        raise UserError(
            f"{path}: is a directory; give a file name ending in {path.suffix or '.csv'}"
        )
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such directory")
    if fmt == "parquet":
        table = _arrow_table(path, rows, columns)  # type problems surface before any file exists
        _atomic(path, lambda tmp: _write_parquet(table, tmp))
        return path
    text = {"csv": _csv_text, "jsonl": _jsonl_text, "json": _json_text}[fmt](rows, columns)
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))
    return path


# ----------------------------------------------------------------------------- reading


def _check_readable(path: Path) -> None:
    """A regular file of at most `MAX_BYTES`; anything else is a `UserError`."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: is a directory, not a table file")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: not a regular file (a pipe or device?); give a table file")
    if info.st_size > MAX_BYTES:
        raise UserError(
            f"{path}: {info.st_size} bytes is over the limit of {MAX_BYTES} bytes for a table "
            "read whole; split the file"
        )


def _json_array(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})"
        ) from None
    bad = next((i for i, r in enumerate(data) if not isinstance(r, dict)), None)
    if bad is not None:
        raise UserError(
            f"{path}: item {bad + 1} of the JSON array is a {type(data[bad]).__name__}; "
            "a table is a list of objects"
        )
    return data


def _one_document(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _from_records(
    path: Path, records: list[dict[str, Any]], lines: tuple[int, ...] | None
) -> Table:
    if not records:
        raise UserError(f"{path}: has no data rows")
    columns = _keys(records)
    rows = [{c: r.get(c) for c in columns} for r in records]
    return Table(path, columns, rows, lines)


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # ArrowInvalid, OSError, ...: all about the file
        raise UserError(f"{path}: cannot read as parquet: {first_line(exc)}") from None
    columns = list(table.column_names)
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise UserError(f"{path}: columns repeat: {', '.join(map(repr, dup))}")
    if table.num_rows == 0:
        raise UserError(f"{path}: has no data rows")
    return Table(path, columns, table.to_pylist())


def _keys(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows``, in first-seen order."""
    return list(dict.fromkeys(k for row in rows for k in row))


# ----------------------------------------------------------------------------- writing


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it into place.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    tmp = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        plain_mode(fd)
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path | None) -> None:
    if tmp is not None:
        tmp.unlink(missing_ok=True)


def _cell_text(value: Any) -> str:
    """A CSV cell: None is empty, a list or dict is JSON text, anything else ``str``."""
    if value is None:
        return ""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # numpy arrays and scalars
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _csv_text(rows: list[Mapping[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell_text(row.get(c)) for c in columns] for row in rows)
    return out.getvalue()


def _plain(row: Mapping[str, Any], columns: list[str]) -> dict[str, Any]:
    return {c: row.get(c) for c in columns}


def _jsonl_text(rows: list[Mapping[str, Any]], columns: list[str]) -> str:
    return "".join(
        json.dumps(_plain(row, columns), ensure_ascii=False, default=_json_default) + "\n"
        for row in rows
    )


def _json_text(rows: list[Mapping[str, Any]], columns: list[str]) -> str:
    data = [_plain(row, columns) for row in rows]
    return json.dumps(data, ensure_ascii=False, indent=1, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    """numpy values as lists/numbers, dates as ISO text, anything else as its text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _arrow_table(path: Path, rows: list[Mapping[str, Any]], columns: list[str]):
    import pyarrow as pa

    arrays = []
    for c in columns:
        try:
            arrays.append(pa.array([row.get(c) for row in rows]))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise UserError(
                f"{path}: column {c!r} mixes types Parquet cannot hold in one column "
                f"({first_line(exc)}); write .jsonl or .csv instead"
            ) from None
    return pa.Table.from_arrays(arrays, names=columns)


def _write_parquet(table, tmp: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, tmp)
