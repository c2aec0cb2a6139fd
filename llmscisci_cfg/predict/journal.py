"""What has been predicted so far, kept on disk so an interrupted `predict` resumes.

Each finished section is appended (and flushed) as one JSON line to ``OUT.partial.jsonl`` (one
file per process of a sharded run), after a first line with the settings that shape the
answers; `--resume` reads them back and skips what they hold, so an API is never asked
twice. The output file itself is written only at the end, atomically: nothing that looks
complete exists before the prediction is. A ``--limit`` run keeps its journal for a later
``--resume`` over more rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SUFFIX = ".partial"


def paths(output: Path) -> list[Path]:
    """Every journal of ``output`` (one per process)."""
    return sorted(output.parent.glob(f"{output.name}{SUFFIX}*.jsonl"))


def path_for(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.name}{SUFFIX}{'' if world == 1 else f'.rank{rank}'}.jsonl")


def read(output: Path) -> dict[tuple[int, str], dict[str, Any]]:
    """Finished entries by (row, aspect), from every journal; a torn last line is skipped."""
    done: dict[tuple[int, str], dict[str, Any]] = {}
    for path in paths(output):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # torn by an interruption: predicted again
            if isinstance(entry, dict) and "row" in entry and "aspect" in entry:
                done[(int(entry["row"]), str(entry["aspect"]))] = entry
    return done


def read_settings(output: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The settings line each journal of ``output`` starts with (see `Journal`)."""
    found = []
    for path in paths(output):
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline()
        try:
            entry = json.loads(first)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("settings"), dict):
            found.append((path, entry["settings"]))
    return found


class Journal:
    """Appends finished entries to one journal file, durably. A new journal starts with a
    ``{"settings": …}`` line: what shaped its answers (a resume with others is refused)."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = path
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        if self.file.tell() == 0:
            self.write_line({"settings": settings})

    def write_line(self, entry: dict[str, Any]) -> None:
        self.write([entry])

    def write(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def remove(output: Path) -> None:
    for path in paths(output):
        path.unlink(missing_ok=True)
