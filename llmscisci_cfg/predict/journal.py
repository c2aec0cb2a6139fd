"""What has been predicted so far, kept on disk so an interrupted `predict` resumes.

Each finished section is appended (and flushed) as one JSON line, an `Entry`, to
``OUT.partial.jsonl`` (one file per process of a sharded run), after a first line with the
settings that shape the answers; `--resume` reads them back and skips what they hold, so an API
is never asked twice. The output file itself is written only at the end, atomically: nothing
that looks complete exists before the prediction is. A ``--limit`` run keeps its journal for a
later ``--resume`` over more rows.

What an interruption can leave is read back safely: a torn line (not JSON) is skipped and its
section predicted again, and the next entry starts on a line of its own. What it cannot leave
is refused, naming the file and line: a first line that is not the settings (the answers'
settings could not be checked) or a JSON line that is not an entry (an edited journal).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError

SUFFIX = ".partial"


@dataclass(frozen=True)
class Entry:
    """One finished section of one row: its answer, or the reason it has none.

    ``input`` is the sha256 of what was asked (`predict.items.Item.fingerprint`): a resumed
    run keeps the answer only while the row still asks exactly that.
    """

    row: int
    aspect: str
    id: str
    input: str = ""  # empty: written by an llmscisci that did not record it
    reason: str = ""  # why there is no answer (empty_text, no_gold, no_answer); "" when asked
    truncated: bool = False
    shots: list[str] = field(default_factory=list)
    pred: Any = None
    raw: Any = None
    valid: bool = False
    note: str = ""  # rationale: why it was dropped; judge pairwise: inconsistent
    prompt_tokens: int = 0
    completion_tokens: int = 0
    confidence: float | None = None
    confidence_note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Entry:
        """The entry a journal line holds; `ValueError` saying what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        for key in ("row", "aspect", "id"):
            if key not in data:
                raise ValueError(f"no {key!r}")
        for key, check, what in _CHECKS:
            if key in data and not check(data[key]):
                raise ValueError(f"{key!r} is {data[key]!r}, not {what}")
        return cls(**data)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _probability(value: Any) -> bool:
    if value is None:
        return True
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and 0.0 <= value <= 1.0


_CHECKS = (
    ("row", _count, "a row number (0 or more)"),
    ("aspect", lambda v: isinstance(v, str) and v != "", "an aspect name"),
    ("id", lambda v: isinstance(v, str), "a document id (text)"),
    ("input", lambda v: isinstance(v, str), "a sha256 (text)"),
    ("reason", lambda v: isinstance(v, str), "text"),
    ("truncated", lambda v: isinstance(v, bool), "true or false"),
    (
        "shots",
        lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "a list of ids",
    ),
    ("valid", lambda v: isinstance(v, bool), "true or false"),
    ("note", lambda v: isinstance(v, str), "text"),
    ("prompt_tokens", _count, "a token count"),
    ("completion_tokens", _count, "a token count"),
    ("confidence", _probability, "a probability or null"),
    ("confidence_note", lambda v: isinstance(v, str), "text"),
)


def paths(output: Path) -> list[Path]:
    """Every journal of ``output`` (one per process)."""
    return sorted(output.parent.glob(f"{output.name}{SUFFIX}*.jsonl"))


def path_for(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.name}{SUFFIX}{'' if world == 1 else f'.rank{rank}'}.jsonl")


def read(output: Path) -> dict[tuple[int, str], Entry]:
    """Finished entries by (row, aspect), from every journal. A torn line (not JSON: what an
    interruption leaves) is skipped; a JSON line that is not an entry is a `UserError`."""
    done: dict[tuple[int, str], Entry] = {}
    for path in paths(output):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines[1:], start=2):  # line 1: the settings
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue  # torn by an interruption: predicted again
            try:
                entry = Entry.from_json(data)
            except (ValueError, TypeError) as exc:
                raise UserError(
                    f"{path}:{number}: not a journal entry ({exc}); the journal was edited or "
                    "damaged: delete that line to predict its section again, or start again "
                    "with --overwrite"
                ) from None
            done[(entry.row, entry.aspect)] = entry
    return done


def read_settings(output: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """The settings line each journal of ``output`` starts with (see `Journal`); None for a
    journal whose first line is not one (damaged or edited). An empty file has no settings
    and no answers: it is left out."""
    found: list[tuple[Path, dict[str, Any] | None]] = []
    for path in paths(output):
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline()
        if not first:
            continue
        try:
            entry = json.loads(first)
        except ValueError:
            entry = None
        ok = isinstance(entry, dict) and isinstance(entry.get("settings"), dict)
        found.append((path, entry["settings"] if ok else None))
    return found


class Journal:
    """Appends finished entries to one journal file, durably. A new journal starts with a
    ``{"settings": …}`` line: what shaped its answers (a resume with others is refused). A
    journal whose last line was torn gets a line break first, so the torn line stays alone
    (skipped) and the new entry is read back whole."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = path
        torn = path.is_file() and not _ends_a_line(path)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        if self.file.tell() == 0:
            self._lines([{"settings": settings}])
        elif torn:
            self.file.write("\n")

    def write(self, entries: list[Entry]) -> None:
        self._lines([e.as_json() for e in entries])

    def _lines(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            self.file.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _ends_a_line(path: Path) -> bool:
    """Whether ``path`` is empty or ends with a line break."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def remove(output: Path) -> None:
    for path in paths(output):
        path.unlink(missing_ok=True)
