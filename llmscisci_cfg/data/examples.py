"""From source rows to examples: one per report per aspect, labels decoded; each method's rows.

Rows of the built dataset (the contract with rewards and the runner), all methods:
``id`` (document id), ``aspect``, ``prompt`` (system + user messages), ``gold`` (the label
value of the task's answer kind: a category index, a one-hot list, one level per dimension;
None when the recipe declares no labels). SFT adds ``completion``, DPO adds ``chosen`` and
``rejected`` (each one assistant message). While it is built a row also carries ``text``, the
section as read (cleaned by ``data.clean``, never truncated); it is not saved.

The section text comes from `data.clean.section_text`, the one reader `predict` uses too, so
training, eval and predict see the same text.

Every example that is left out is counted under a reason (`report.BuildReport.dropped`), so
``rows × aspects == examples + sum(dropped)`` always holds. The method-specific part (one
function per training method: `grpo_row`, `sft_row`, `dpo_row`) is kept apart from reading.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from llmscisci_cfg import console
from llmscisci_cfg.data.clean import COUNT_KEYS, options_of, section_report
from llmscisci_cfg.data.sources import Source, jsonl_records, read_bytes
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.yamlio import decode
from llmscisci_cfg.task.kinds import LabelKind, read_answer
from llmscisci_cfg.task.labels import LabelError, shown
from llmscisci_cfg.task.spec import TaskSpec

Row = dict[str, Any]
Message = dict[str, str]

#: Each method's answer columns (one assistant message each), beside id/aspect/prompt/gold.
ANSWER_COLUMNS = {"sft": ("completion",), "dpo": ("chosen", "rejected"), "grpo": ()}

# Drop reasons, in the order they are checked.
EMPTY_ID = "empty_id"
EMPTY_TEXT = "empty_text"
NO_LABEL = "no_label"  # data.labels has no row for the id
BAD_LABEL = "bad_label"
NO_TRACE = "no_trace"
EMPTY_ANSWER = "empty_answer"
IDENTICAL_PAIR = "identical_pair"
TIED_ANSWERS = "tied_answers"


@dataclass(frozen=True)
class Example:
    """One section of one report, before it becomes a method's row."""

    id: str
    aspect: str
    text: str
    gold: Any  # the aspect's label value (`task.kinds`), None without label columns
    where: str  # file:line of the source row, for messages
    chosen: str | None = None
    rejected: str | None = None
    answers: tuple[str, ...] | None = None  # data.pairs: the answers to choose a pair from


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
    is a `UserError` naming both rows; otherwise a warning, except for DPO, whose several
    preference rows per report are usual."""
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
    if repeats and job.method != "dpo":
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
        if value is None or (isinstance(value, str) and not value.strip()):
            if kind.kind != "dimensions":
                raise LabelError("the label is empty")
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


# ----------------------------------------------------------------------------- builders
#
# One function per training method turns an `Example` into that method's row, or into the
# reason it has none. ``messages(aspect, text)`` builds the prompt (`TaskSpec.messages`, or
# the same from `measure.Prompts`, which renders each aspect's prompt once).

MessagesFn = Callable[[str, str], list[Message]]


def _base(ex: Example, messages: MessagesFn) -> Row:
    try:
        prompt = messages(ex.aspect, ex.text)
    except UserError as exc:
        raise UserError(f"{ex.where}: id {shown(ex.id)}: {exc}") from None
    return {"id": ex.id, "aspect": ex.aspect, "prompt": prompt, "gold": ex.gold, "text": ex.text}


def _assistant(content: str) -> list[Message]:
    return [{"role": "assistant", "content": content}]


def grpo_row(ex: Example, messages: MessagesFn) -> Row:
    """GRPO: prompt + gold (TRL passes ``gold``, ``id`` and ``aspect`` to the rewards)."""
    return _base(ex, messages)


def sft_row(
    ex: Example, task: TaskSpec, messages: MessagesFn, trace: str | None, missing: str, held: bool
) -> Row | str:
    """SFT: prompt + ``<think>\nTRACE\n</think>\n<label>\n[…]\n</label>``.

    ``trace``: the example's trace ("" without a trace file, None when the file has none for
    it). A training example without one is dropped (``missing: drop``, reason no_trace) or
    gets an empty think block; a held-out one (``held``) never is: evaluation reads only its
    prompt and gold label.
    """
    if ex.gold is None:
        raise UserError(
            f"{ex.where}: id {shown(ex.id)}: method sft writes the gold label into the "
            "completion, but the recipe declares no label column; set data.columns.label"
        )
    if trace is None:
        if missing == "drop" and not held:
            return NO_TRACE
        trace = ""
    return {
        **_base(ex, messages),
        "completion": _assistant(task.completion(trace, ex.gold, ex.aspect)),
    }


def dpo_row(ex: Example, task: TaskSpec, messages: MessagesFn, rule: str | None) -> Row | str:
    """DPO: prompt + chosen/rejected answers, or the reason there is no pair (empty answer,
    identical answers; with ``rule`` (data.pairs), the pair chosen by `choose_pair`)."""
    if rule is not None and ex.answers is not None:
        pair = choose_pair(ex.answers, ex.gold, task.label_kind(ex.aspect), rule)
        if isinstance(pair, str):
            return pair
        ex = replace(ex, chosen=pair[0], rejected=pair[1])
    if not ex.chosen or not ex.rejected:
        return EMPTY_ANSWER
    if ex.chosen == ex.rejected:
        return IDENTICAL_PAIR
    return {
        **_base(ex, messages),
        "chosen": _assistant(ex.chosen),
        "rejected": _assistant(ex.rejected),
    }


def choose_pair(
    answers: tuple[str, ...], gold: Any, kind: LabelKind, rule: str
) -> tuple[str, str] | str:
    """``(chosen, rejected)``: the best- and worst-scoring answers against ``gold``, or the
    reason there is no pair (``tied_answers``: every answer scores the same).

    ``hamming_to_gold`` scores the kind's correctness (1 − Hamming loss for a one-hot list),
    ``exact_match`` 1 or 0; an answer without a valid label (or one that breaks the task's
    label constraints) scores -1 (below any valid one). Empty answers take no part.

    >>> from llmscisci_cfg.task.kinds import MultiLabel
    >>> kind = MultiLabel.plain(2)
    >>> choose_pair(("<think/></think><label>[1, 0]</label>", "x"), [1, 0], kind, "exact_match")[1]
    'x'
    """
    scored = []
    for text in answers:
        if not text:
            continue
        label = read_answer(text, kind).value
        if label is None:
            score = -1.0
        elif rule == "exact_match":
            score = float(list(label) == list(gold) if isinstance(gold, list) else label == gold)
        else:
            score = kind.score(gold, label)
        scored.append((score, text))
    if len(scored) < 2:
        return EMPTY_ANSWER
    best, worst = max(scored, key=lambda s: s[0]), min(scored, key=lambda s: s[0])
    if best[0] == worst[0]:
        return TIED_ANSWERS
    return best[1], worst[1]


@dataclass
class MethodRows:
    """The recipe's method as a row builder: ``row(example, held)`` is the method's row or the
    reason there is none (``held``: the example is in a held-out split)."""

    job: Job
    messages: MessagesFn
    traces: dict[tuple[str, str], str] | None = None

    @classmethod
    def of(cls, job: Job, messages: MessagesFn | None = None) -> MethodRows:
        traces = None
        if job.method == "sft" and job.recipe.data.traces is not None:
            traces = load_traces(job)
        return cls(job, messages or job.task.messages, traces)

    def trace(self, ex: Example) -> str | None:
        """SFT: the example's trace ("" without a trace file, None when the file lacks it)."""
        return "" if self.traces is None else self.traces.get((ex.id, ex.aspect))

    def row(self, ex: Example, held: bool = False) -> Row | str:
        job, task = self.job, self.job.task
        if job.method == "sft":
            spec = job.recipe.data.traces
            missing = spec.missing if spec else "empty"
            return sft_row(ex, task, self.messages, self.trace(ex), missing, held)
        if job.method == "dpo":
            pairs = job.recipe.data.pairs
            return dpo_row(ex, task, self.messages, pairs.choose_by if pairs else None)
        return grpo_row(ex, self.messages)


def build_rows(
    job: Job,
    examples: list[Example],
    held_out: set[str] | frozenset[str] = frozenset(),
    stats: Counter | None = None,
) -> tuple[list[Row], Counter]:
    """The method's rows for ``examples`` and the drops by reason (``held_out``: the test
    documents; ``stats``: SFT's ``with_trace`` / ``without_trace`` counts of the rows built)."""
    maker = MethodRows.of(job)
    rows, dropped = [], Counter()
    for ex in examples:
        built = maker.row(ex, ex.id in held_out)
        if isinstance(built, str):
            dropped[built] += 1
            continue
        rows.append(built)
        if stats is not None and job.method == "sft":
            stats["with_trace" if maker.trace(ex) else "without_trace"] += 1
    return rows, dropped


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
