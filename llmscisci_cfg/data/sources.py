"""Reading the report table: CSV, JSON/JSONL, Parquet or a save_to_disk folder, as a `datasets.Dataset`.

Every problem a user can cause (missing, empty or non-UTF-8 file, unreadable content, a missing
column) is a `UserError` that names the file and, where it can, the line. CSV and JSON Lines
are parsed once, by us (which is how every row knows its line); Parquet, single-document JSON
and save_to_disk folders go through `datasets`. CSV cells are read as text exactly as written
(no NA guessing, no int inference), so ``"1"`` stays a code and ``"NA"`` stays text.
``builtin:sample`` is the shipped sample dataset.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg import files
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.yamlio import decode

if TYPE_CHECKING:
    from datasets import Dataset

    from llmscisci_cfg.recipe.resolve import Job
_EXTENSIONS = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class Source:
    """The rows of the source table and where each came from."""

    path: Path
    format: str
    rows: Dataset
    lines: tuple[int, ...] | None = None  # first file line of each row (CSV, JSONL)

    @property
    def columns(self) -> list[str]:
        return list(self.rows.column_names)

    def where(self, index: int) -> str:
        """``file:LINE`` of row ``index`` (0-based), or ``file: row N`` when lines are unknown."""
        if self.lines is not None and index < len(self.lines):
            return f"{self.path}:{self.lines[index]}"
        return f"{self.path}: row {index + 1}"


def source_format(path: Path, declared: str) -> str:
    """The reader for ``path``: the declared format, or one decided from the extension."""
    if declared != "auto":
        return declared
    if path.is_dir():
        return "disk"
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            "set data.source.format to csv, json, parquet or disk"
        )
    return fmt


def load_source(job: Job) -> Source:
    """Read the job's rows (``data.source``, or the train file of ``data.splits``) into a
    `Source`, or raise a `UserError` naming the file."""
    data = job.recipe.data
    declared = data.source.format if data.source is not None else data.splits.format
    return read_source(job.data.require(), declared, job.data.key)


def read_source(path: Path, declared: str = "auto", key: str = "data.source.path") -> Source:
    """Read one table (``key``: the recipe key that names it, for messages) into a `Source`.

    A CSV file is parsed in chunks straight into Arrow columns, so a large file costs its size
    in Arrow memory, not a Python object per cell."""
    fmt = source_format(path, declared)
    if fmt == "disk":
        return Source(path, fmt, _load_disk(path))
    if path.is_dir():
        raise UserError(f"{path}: is a directory; {key} in format {fmt} needs a file")
    if fmt == "parquet":
        files.check_regular(path, key, files.DATA_LIMIT)
        return Source(path, fmt, _nonempty(_load_builder(fmt, path), path))
    if fmt == "csv":
        return _csv_source(path, key)
    raw = read_bytes(path, key)
    if not raw.strip():
        raise UserError(f"{path}: the file is empty")
    text = decode(raw, str(path))
    records = jsonl_or_none(text, path)
    if records is None:  # one JSON document (a list of objects, or datasets' "field" layout)
        return Source(path, fmt, _nonempty(_load_builder(fmt, path), path))
    rows = _from_records([r for _, r in records], path)
    return Source(path, fmt, rows, tuple(n for n, _ in records))


def require_columns(source: Source, wanted: dict[str, str]) -> None:
    """Raise one `UserError` for every recipe key whose column (``{key: column}``) is absent."""
    have = source.columns
    problems = []
    for key, column in wanted.items():
        if column not in have:
            close = difflib.get_close_matches(column, have, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"{source.path}: column {column!r} ({key}) not found{hint}; "
                f"columns: {column_list(have)}"
            )
    if problems:
        raise UserError("\n".join(problems))


def column_list(names: list[str], most: int = 20) -> str:
    """Column names for a message: each cut to 40 characters, at most ``most`` of them (the
    header of a file that is not a table would otherwise be echoed whole)."""
    cut = [n if len(n) <= 40 else n[:37] + "..." for n in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(cut) + more


# ----------------------------------------------------------------------------- readers


def parse_csv(text: str, path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the data records (cells as text) and the first line of each record.

    Ragged rows are errors; blank lines are skipped, as pandas does; a leading BOM is dropped.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    records, lines = [], []
    header = _csv_header(reader, path, lambda: not text.strip())
    for line, record in _csv_records(reader, header, path):
        records.append(record)
        lines.append(line)
    if not records:
        raise UserError(f"{path}: has no data rows")
    return header, records, lines


#: CSV records parsed into Python lists before they become Arrow columns.
CSV_CHUNK = 20_000


def _csv_source(path: Path, key: str) -> Source:
    """A CSV file as a `Source` of text columns, parsed in chunks of `CSV_CHUNK` records."""
    import pyarrow as pa

    files.check_regular(path, key, files.DATA_LIMIT)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header, batches, lines = _csv_batches(f, path)
    except UnicodeDecodeError:
        decode(read_bytes(path, key), str(path))  # raises the UserError naming line and column
        raise
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({key}): {exc.strerror or exc}") from None
    table = pa.Table.from_batches(batches, schema=pa.schema([(n, pa.string()) for n in header]))
    return Source(path, "csv", _from_arrow(table), tuple(lines))


def _csv_batches(f, path: Path) -> tuple[list[str], list, list[int]]:
    """The header, the records as Arrow record batches, and each record's first line; the same
    checks as `parse_csv`."""
    first = f.read(1)
    if first != "\ufeff" and first:
        f.seek(0)
    reader = csv.reader(f)
    batches, lines, chunk = [], [], []

    def empty() -> bool:
        f.seek(0)
        return not f.read(1 << 16).strip()

    header = _csv_header(reader, path, empty)
    for line, record in _csv_records(reader, header, path):
        chunk.append(record)
        lines.append(line)
        if len(chunk) == CSV_CHUNK:
            batches.append(_record_batch(chunk, header))
            chunk = []
    if chunk:
        batches.append(_record_batch(chunk, header))
    if not lines:
        raise UserError(f"{path}: has no data rows")
    return header, batches, lines


def _csv_header(reader, path: Path, empty) -> list[str]:
    """The checked header of a CSV ``reader`` (``empty()``: whether the whole file is blank)."""
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: CSV error: {exc}") from None
    if not header or not any(c.strip() for c in header):
        raise UserError(f"{path}: the file is empty" if empty() else f"{path}: no header line")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise UserError(f"{path}:1: the header repeats column(s) {', '.join(map(repr, dup))}")
    check_column_names(header, f"{path}:1: the header")
    return header


def _csv_records(reader, header: list[str], path: Path):
    """``(first line, record)`` of every non-blank record; a ragged one is a `UserError`."""
    start = reader.line_num + 1
    try:
        for record in reader:
            if record and len(record) != len(header):
                raise UserError(
                    f"{path}:{start}: {len(record)} fields, but the header has {len(header)}; "
                    "quote cells that contain commas or newlines"
                )
            if record:
                yield start, record
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: CSV error: {exc}") from None


def _record_batch(records: list[list[str]], header: list[str]):
    import pyarrow as pa

    columns = [pa.array([r[k] for r in records], pa.string()) for k in range(len(header))]
    return pa.RecordBatch.from_arrays(columns, names=header)


def _from_arrow(table) -> Dataset:
    """A `Dataset` over an Arrow table held in memory."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    return Dataset(InMemoryTable(table))


def check_column_names(names: list[str], where: str) -> None:
    """Refuse a column name Arrow cannot hold: a NUL character ends a name there, so
    ``"a\\x00b"`` would become ``"a"`` (and a traceback when the table is built)."""
    bad = [n for n in names if "\x00" in n]
    if bad:
        shown = column_list(bad, most=3)
        raise UserError(f"{where} has a NUL character in column name(s) {shown!r}; remove it")


def jsonl_or_none(text: str, path: Path) -> list[tuple[int, dict]] | None:
    """``(line, record)`` of JSON Lines text, or None for a single JSON document.

    A bad line is a `UserError` naming ``file:line`` (the `datasets` reader would only say
    "trailing data at position N").
    """
    if text.lstrip().startswith("["):
        return None
    try:
        records = jsonl_records(text, path)
    except UserError:
        if _is_one_document(text):  # a pretty-printed JSON object, not JSON Lines
            return None
        raise
    if not records:
        raise UserError(f"{path}: has no data rows")
    return records


def jsonl_records(text: str, path: Path) -> list[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of JSON Lines ``text``.

    A line that is not a JSON object is a `UserError` naming ``file:line``.
    """
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{i}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{i}: expected a JSON object, got {type(record).__name__}")
        check_column_names(list(record), f"{path}:{i}: the object")
        out.append((i, record))
    return out


def _is_one_document(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def read_bytes(path: Path, what: str = "data.source.path") -> bytes:
    """The bytes of a data file (a regular file of at most `files.DATA_LIMIT` bytes)."""
    return files.read_bytes(path, what, files.DATA_LIMIT)


def _from_columns(columns: dict[str, list[str]], header: list[str]) -> Dataset:
    """A `Dataset` of text columns, in header order."""
    from datasets import Dataset, Features, Value

    return Dataset.from_dict(columns, features=Features({name: Value("string") for name in header}))


def _from_records(records: list[dict[str, Any]], path: Path) -> Dataset:
    """A `Dataset` of JSON records (types inferred by Arrow, as the `datasets` JSON reader does)."""
    from datasets import Dataset

    try:
        return Dataset.from_list(records)
    except Exception as exc:  # Arrow cannot put the values of one key in one column
        raise UserError(f"{path}: cannot read as json: {_root_cause(exc)}") from None


def _nonempty(rows: Dataset, path: Path) -> Dataset:
    if len(rows) == 0:
        raise UserError(f"{path}: has no data rows")
    return rows


@contextlib.contextmanager
def quiet_datasets():
    """No progress bars or error logs from `datasets` inside the block (our messages say it)."""
    import datasets

    bars_on = datasets.is_progress_bar_enabled()
    level = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        if bars_on:
            datasets.enable_progress_bars()


def _load_builder(fmt: str, path: Path) -> Dataset:
    import datasets

    try:
        with quiet_datasets(), tempfile.TemporaryDirectory(prefix="llmscisci-read-") as tmp:
            return datasets.load_dataset(
                fmt,
                data_files=str(path),
                split="train",
                cache_dir=tmp,
                keep_in_memory=True,
            )
    except Exception as exc:  # the readers raise many types; every one here is about the file
        raise UserError(f"{path}: cannot read as {fmt}: {_root_cause(exc)}") from None


def _load_disk(path: Path) -> Dataset:
    import datasets

    try:
        with quiet_datasets():
            loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
    except Exception as exc:
        raise UserError(
            f"{path}: not a dataset saved with save_to_disk: {_root_cause(exc)}"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):  # we split by document ourselves: pool the splits
        try:
            loaded = datasets.concatenate_datasets([loaded[name] for name in sorted(loaded)])
        except ValueError as exc:
            raise UserError(f"{path}: its splits have different columns: {exc}") from None
    if len(loaded) == 0:
        raise UserError(f"{path}: has no data rows")
    return loaded


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {exc}".strip()
