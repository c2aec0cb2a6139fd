"""From source rows to examples: one per report per aspect, labels decoded.

An `Example` is method-agnostic: the document id, the aspect, the section text, the gold
label (the value of the task's answer kind: a category index, a one-hot list, one level per
dimension; None when the recipe declares no labels) and the answer columns a method may read.
A training method turns each into its rows (`data.rows.RowBuilder`, given by the caller): the
rows of the built dataset carry ``id``, ``aspect``, ``prompt`` (system + user messages),
``gold`` and the method's answer columns. While it is built a row also carries ``text``, the
section as read (cleaned by ``data.clean``, never truncated); it is not saved.

The section text comes from `data.clean.section_text`, the one reader `predict` uses too, so
training, eval and predict see the same text.

Every example that is left out is counted under a reason (`report.BuildReport.dropped`), so
``rows × aspects == examples + sum(dropped)`` holds for a method that makes one row per
example (a method that makes one row per answer counts each answer instead).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llmscisci_cfg import console
from llmscisci_cfg.data.clean import COUNT_KEYS, options_of, section_report
from llmscisci_cfg.data.rows import Example, Row, RowBuilder
from llmscisci_cfg.data.sources import Source, jsonl_records, read_bytes
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.yamlio import decode
from llmscisci_cfg.task.kinds import LabelKind
from llmscisci_cfg.task.labels import LabelError, shown

# Drop reasons of reading, in the order they are checked (a method adds its own).
EMPTY_ID = "empty_id"
EMPTY_TEXT = "empty_text"
NO_LABEL = "no_label"  # no gold: data.labels has no row for the id, or the label cell is empty
BAD_LABEL = "bad_label"


#: Before/after excerpts of cleaned sections kept for ``preprocess --preview``.
CLEAN_SAMPLES = 5


@dataclass
class CleanTally:
    """What ``data.clean`` did: per aspect, `clean.COUNT_KEYS` summed plus ``sections`` (read)
    and ``changed``; and before/after excerpts of the first `CLEAN_SAMPLES` changed sections."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, doc: str, aspect: str, raw: Any, text: str, counts: dict[str, int]) -> None:
        mine = self.counts.setdefault(
            aspect, dict.fromkeys(("sections", "changed", *COUNT_KEYS), 0)
        )
        before = cell_text(raw)
        mine["sections"] += 1
        mine["changed"] += text != before
        for key, n in counts.items():
            mine[key] += n
        if text != before and len(self.samples) < CLEAN_SAMPLES:
            changed = {k: n for k, n in counts.items() if n and not k.startswith("chars_")}
            self.samples.append(
                {
                    "id": doc,
                    "aspect": aspect,
                    "chars": [len(before), len(text)],
                    "changes": changed,
                    "before": ends(before),
                    "after": ends(text),
                }
            )


def ends(text: str, head: int = 160, tail: int = 80) -> str:
    """The start and end of ``text`` on one line (whitespace runs as one space).

    >>> ends("one  two three four five", head=3, tail=4)
    'one … five'
    """
    flat = " ".join(text.split())
    if len(flat) <= head + tail + 3:
        return flat
    return f"{flat[:head]} … {flat[-tail:]}"


# ----------------------------------------------------------------------------- collecting


@dataclass(frozen=True)
class Slot:
    """One report's aspect: the example read from it, or why there is none (``reason``, with
    ``note`` saying what was wrong with a bad label); ``counts`` is what cleaning changed."""

    id: str
    aspect: str
    example: Example | None
    reason: str | None = None
    note: str | None = None
    counts: dict[str, int] | None = None  # None: not cleaned
    raw: Any = None  # the section cell as read (when cleaned)
    text: str = ""  # the section as read and cleaned


#: `read_row`'s default ``cleaning``: the job's ``data.clean``.
FROM_JOB: Any = object()


def read_row(
    row: dict[str, Any],
    where: str,
    job: Job,
    labels: Any = None,
    cleaning: Any = FROM_JOB,
) -> list[Slot]:
    """The slots of one source row, one per aspect built: sections read and cleaned by
    `clean.section_report` (``cleaning``: `clean.options_of` the job's ``data.clean``, which
    a caller reading many rows computes once), gold labels decoded (from the row, or from
    ``labels``: the joined labels table's cells of this id, `labels.Labels.cells`)."""
    cols = job.columns
    if cleaning is FROM_JOB:
        cleaning = options_of(job.recipe.data.clean)
    doc = cell_text(row[cols.id])
    found = labels.cells.get(doc) if labels is not None and doc else None
    out = []
    for aspect in cols.aspects:
        if not doc:
            out.append(Slot(doc, aspect, None, EMPTY_ID))
            continue
        raw = row[cols.text[aspect]]
        text, counts = section_report(raw, cleaning)
        seen = {"counts": counts, "raw": raw if counts is not None else None, "text": text}
        if not text:
            out.append(Slot(doc, aspect, None, EMPTY_TEXT, **seen))
            continue
        gold, problem = None, None
        if labels is not None and found is None:
            out.append(Slot(doc, aspect, None, NO_LABEL, **seen))
            continue
        if cols.label is not None:
            cell = found[aspect] if found is not None else row[cols.label[aspect]]
            if not cell_text(cell):  # an empty cell is no label, never a coding: counted
                out.append(Slot(doc, aspect, None, NO_LABEL, **seen))
                continue
            gold, problem = _gold(cell, job, aspect, labels.where(doc) if found else where, doc)
            if problem is not None:
                out.append(Slot(doc, aspect, None, BAD_LABEL, problem, **seen))
                continue
        example = Example(
            id=doc,
            aspect=aspect,
            text=text,
            gold=gold,
            where=where,
            chosen=cell_text(row[cols.chosen[aspect]]) if cols.chosen else None,
            rejected=cell_text(row[cols.rejected[aspect]]) if cols.rejected else None,
            answers=tuple(cell_text(row[c]) for c in cols.answers[aspect])
            if cols.answers
            else None,
        )
        out.append(Slot(doc, aspect, example, **seen))
    return out


def collect(
    source: Source, job: Job, tally: CleanTally | None = None, labels: Any = None
) -> tuple[list[Example], Counter]:
    """One `Example` per row per aspect; empty ids/sections and (with drop) bad labels counted.

    The section is read by `clean.section_text` (cleaned when the recipe declares
    ``data.clean``); ``tally`` collects what cleaning did. (The build reads rows in batches
    through `read_row`; this reads a whole `Source` at once.)
    """
    cols = job.columns
    check_ids(source.rows[cols.id][:], source.where, job)
    examples: list[Example] = []
    dropped: Counter = Counter()
    table = source.rows.select_columns(list(dict.fromkeys(cols.required().values()))).to_list()
    cleaning = options_of(job.recipe.data.clean)
    for i, row in enumerate(table):
        for slot in read_row(row, source.where(i), job, labels, cleaning):
            if slot.counts is not None and tally is not None:
                tally.add(slot.id, slot.aspect, slot.raw, slot.text, slot.counts)
            if slot.example is None:
                dropped[slot.reason] += 1
            else:
                examples.append(slot.example)
    return examples, dropped


def check_ids(ids: Iterable[Any], where: Callable[[int], str], job: Job) -> int:
    """How many rows repeat an earlier row's id. With a trace file (matched by id) a repeat
    is a `UserError` naming both rows; otherwise a warning, except for a method whose several
    rows per report are usual (`schema.Needs.repeated_ids`: DPO's preference rows)."""
    seen: dict[str, int] = {}
    repeats: list[int] = []
    for i, value in enumerate(ids):
        doc = cell_text(value)
        if doc and seen.setdefault(doc, i) != i:
            if job.traces is not None:
                raise UserError(
                    f"{where(i)}: id {shown(doc)} (column {job.columns.id!r}) is also the id at "
                    f"{where(seen[doc])}; traces are matched by id, so each id must be one report"
                )
            repeats.append(i)
    if repeats and not job.recipe.method.needs.repeated_ids:
        console.warn(
            f"{len(repeats)} row(s) repeat an earlier row's id (first: {where(repeats[0])});"
            " rows of one id count as one document in the split but are scored apart: check "
            "for copied rows"
        )
    return len(repeats)


def cell_text(value: Any) -> str:
    """A table cell as text: None is empty, numbers keep their digits (an id 0 is "0")."""
    return "" if value is None else str(value).strip()


def _gold(value, job: Job, aspect: str, where: str, doc: str) -> tuple[Any, str | None]:
    """The aspect's label value decoded with the task's answer kind, or (with
    ``on_bad_label: drop``) None and what was wrong; an unreadable label is never guessed."""
    data = job.recipe.data
    kind = job.task.label_kind(aspect)
    try:
        label = _decode(kind, value, data.label_codec)
        rule = getattr(kind, "rule", None)
        broken = rule.violation(label) if rule is not None else None
        if broken:
            raise LabelError(f"{label} breaks the task's label constraints: {broken}")
        return (list(label) if isinstance(label, tuple) else label), None
    except LabelError as exc:
        if data.on_bad_label == "drop":
            return None, str(exc)
        column = job.columns.label[aspect]
        raise UserError(
            f"{where}: id {shown(doc)}: column {column!r} ({job.columns.label_key(aspect)}): "
            f"{exc}; fix the label, or set data.on_bad_label: drop to skip such rows"
        ) from None


def _decode(kind: LabelKind, value: Any, codec: str) -> Any:
    """`kind.decode_gold`, remembered per text cell: a corpus has few distinct label cells, and
    decoding is a pure function of the cell, the (frozen) kind and the codec."""
    if not isinstance(value, str):
        return kind.decode_gold(value, codec)
    label, problem = _decode_text(kind, codec, value)
    if problem is not None:
        raise LabelError(problem)
    return list(label) if isinstance(label, list) else label


@functools.lru_cache(maxsize=1 << 16)
def _decode_text(kind: LabelKind, codec: str, value: str) -> tuple[Any, str | None]:
    try:
        return kind.decode_gold(value, codec), None
    except LabelError as exc:
        return None, str(exc)


# ----------------------------------------------------------------------------- rows


def build_rows(
    rows: RowBuilder,
    job: Job,
    examples: list[Example],
    held_out: set[str] | frozenset[str] = frozenset(),
    counts: Counter | None = None,
) -> tuple[list[Row], Counter]:
    """The method's rows for ``examples`` and the drops by reason (``held_out``: the test
    documents; ``counts``: what the method counts, e.g. SFT's ``with_trace``). The build
    streams the same through Arrow (`data.build`); this holds every row in memory."""
    maker = rows.maker(job, job.task.messages)
    built, dropped = [], Counter()
    counts = Counter() if counts is None else counts
    for ex in examples:
        for made in maker.rows(ex, ex.id in held_out, counts):
            if isinstance(made, str):
                dropped[made] += 1
            else:
                built.append(made)
    return built, dropped


# ----------------------------------------------------------------------------- traces


def load_traces(job: Job) -> dict[tuple[str, str], str]:
    """``{(id, aspect): trace}`` from the recipe's JSONL trace file."""
    spec = job.recipe.data.traces
    assert spec is not None and job.traces is not None
    path = job.traces.require()
    if path.is_dir():
        raise UserError(f"{path}: is a directory; data.traces.path needs a JSONL file")
    text = decode(read_bytes(path, "data.traces.path"), str(path))
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    traces: dict[tuple[str, str], str] = {}
    first: dict[tuple[str, str], int] = {}
    for n, record in jsonl_records(text, path):
        for key in (spec.id_key, spec.aspect_key, spec.text_key):
            if key not in record:
                raise UserError(
                    f"{path}:{n}: key {key!r} not found (data.traces); keys: {', '.join(record)}"
                )
        k = (cell_text(record[spec.id_key]), cell_text(record[spec.aspect_key]))
        if k in first:
            raise UserError(
                f"{path}:{n}: a second trace for id {shown(k[0])} aspect {shown(k[1])} "
                f"(first at line {first[k]})"
            )
        first[k] = n
        traces[k] = "" if record[spec.text_key] is None else str(record[spec.text_key])
    return traces
