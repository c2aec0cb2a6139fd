"""Reading the report table through `datasets`: CSV, JSON/JSONL, Parquet or a save_to_disk folder.

Every problem a user can cause (missing, empty or non-UTF-8 file, unreadable content, a missing
column) is a `UserError` that names the file and, where it can, the line. CSV cells are read
as text exactly as written (no NA guessing, no int inference), so ``"1"`` stays a code and
``"NA"`` stays text. ``builtin:sample`` is the shipped sample dataset.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import hashlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.yamlio import decode
from llmscisci_cfg.resources import BUILTIN, shipped

if TYPE_CHECKING:
    from datasets import Dataset

    from llmscisci_cfg.recipe.schema import Recipe

#: Shipped data files, by ``builtin:`` name.
BUILTIN_DATA = {"sample": "sample/reports.csv", "sample_traces": "sample/traces.jsonl"}
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


def data_path(recipe: Recipe, ref: str, key: str) -> Path:
    """A data reference (``builtin:NAME`` or recipe-relative path) as an existing path."""
    if ref.startswith(BUILTIN):
        name = ref[len(BUILTIN) :]
        if name not in BUILTIN_DATA:
            raise UserError(
                f"{key}: {ref}: no such built-in data; available: "
                + ", ".join(BUILTIN + n for n in BUILTIN_DATA)
            )
        return shipped("assets", BUILTIN_DATA[name])
    path = recipe.resolve(ref)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory ({key}: {ref})")
    return path


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


def load_source(recipe: Recipe) -> Source:
    """Read ``recipe.data.source`` into a `Source`, or raise a `UserError` naming the file."""
    path = data_path(recipe, recipe.data.source.path, "data.source.path")
    fmt = source_format(path, recipe.data.source.format)
    if fmt == "disk":
        return Source(path, fmt, _load_disk(path))
    if path.is_dir():
        raise UserError(f"{path}: is a directory; data.source.format {fmt} needs a file")
    raw = read_bytes(path)
    if not raw.strip():
        raise UserError(f"{path}: the file is empty")
    lines = None
    kwargs: dict = {}
    if fmt == "csv":
        header, lines = csv_layout(decode(raw, str(path)), path)
        if not lines:
            raise UserError(f"{path}: has no data rows")
        kwargs = {"features": _all_text(header), "na_filter": False}
    elif fmt == "json":
        lines = _jsonl_lines(decode(raw, str(path)), path)
    rows = _load_builder(fmt, path, kwargs)
    if len(rows) == 0:
        raise UserError(f"{path}: has no data rows")
    if lines is not None and len(lines) != len(rows):
        lines = None
    return Source(path, fmt, rows, tuple(lines) if lines is not None else None)


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
                f"columns: {', '.join(have)}"
            )
    if problems:
        raise UserError("\n".join(problems))


# ----------------------------------------------------------------------------- hashing


def content_sha256(path: Path) -> str:
    """``sha256sum`` of a file; of a directory, sha256 over its relative file names and their
    digests (so a manifest's hash of a data file can be checked with ``sha256sum``)."""
    if not path.is_dir():
        return _file_digest(path).hex()
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        h.update(_file_digest(p) + b"\0")
    return h.hexdigest()


def source_sha256(recipe: Recipe) -> str:
    """The content hash of the recipe's source (for cache keys and manifests)."""
    return content_sha256(data_path(recipe, recipe.data.source.path, "data.source.path"))


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return h.digest()


# ----------------------------------------------------------------------------- readers


def csv_layout(text: str, path: Path) -> tuple[list[str], list[int]]:
    """The header and the first line of each data record; ragged rows are errors.

    Blank lines are skipped, as the pandas reader behind `datasets` does.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise UserError(f"{path}: no header line")
        lines, start = [], reader.line_num + 1
        for record in reader:
            if record and len(record) != len(header):
                raise UserError(
                    f"{path}:{start}: {len(record)} fields, but the header has {len(header)}; "
                    "quote cells that contain commas or newlines"
                )
            if record:
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: CSV error: {exc}") from None
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise UserError(f"{path}:1: the header repeats column(s) {', '.join(map(repr, dup))}")
    return header, lines


def _jsonl_lines(text: str, path: Path) -> list[int] | None:
    """Line numbers of JSON Lines records, or None for a single JSON document.

    A bad line is a `UserError` naming ``file:line`` (the `datasets` reader would only say
    "trailing data at position N").
    """
    if text.lstrip().startswith("["):
        return None
    try:
        return [i for i, _ in jsonl_records(text, path)]
    except UserError:
        if _is_one_document(text):  # a pretty-printed JSON object, not JSON Lines
            return None
        raise


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
        out.append((i, record))
    return out


def _is_one_document(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def read_bytes(path: Path) -> bytes:
    """The bytes of a data file; an unreadable one (permissions, ...) is a `UserError`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _all_text(header: list[str]):
    from datasets import Features, Value

    return Features({name: Value("string") for name in header})


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


def _load_builder(fmt: str, path: Path, kwargs: dict) -> Dataset:
    import datasets

    try:
        with quiet_datasets(), tempfile.TemporaryDirectory(prefix="llmscisci-read-") as tmp:
            return datasets.load_dataset(
                fmt,
                data_files=str(path),
                split="train",
                cache_dir=tmp,
                keep_in_memory=True,
                **kwargs,
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
