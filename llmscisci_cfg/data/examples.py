"""From source rows to examples: one per report per aspect, labels decoded, split by document.

Rows of the built dataset (the contract with rewards and the runner), all methods:
``id`` (document id), ``aspect``, ``prompt`` (system + user messages), ``gold`` (one-hot
list, or None when the recipe declares no label columns). SFT adds ``completion``, DPO adds
``chosen`` and ``rejected`` (each one assistant message). In memory a row also carries
``text``, the section as read (cleaned by ``data.clean``, never truncated); it is not saved.

The section text comes from `data.clean.section_text`, the one reader `predict` uses too, so
training, eval and predict see the same text.

Every example that is left out is counted under a reason in `BuildReport.dropped`, so
``rows × aspects == examples + sum(dropped)`` always holds.
"""

from __future__ import annotations

from collections import Counter
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

# Drop reasons, in the order they are checked.
EMPTY_ID = "empty_id"
EMPTY_TEXT = "empty_text"
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


def collect(
    source: Source, job: Job, tally: CleanTally | None = None
) -> tuple[list[Example], Counter]:
    """One `Example` per row per aspect; empty ids/sections and (with drop) bad labels counted.

    The section is read by `clean.section_text` (cleaned when the recipe declares
    ``data.clean``); ``tally`` collects what cleaning did.
    """
    cols = job.columns
    cleaning = options_of(job.recipe.data.clean)
    examples: list[Example] = []
    dropped: Counter = Counter()
    table = source.rows.select_columns(list(dict.fromkeys(cols.required().values()))).to_list()
    seen: dict[str, int] = {}
    repeats: list[int] = []
    for i, row in enumerate(table):
        doc = cell_text(row[cols.id])
        if doc and seen.setdefault(doc, i) != i:
            if job.traces is not None:
                raise UserError(
                    f"{source.where(i)}: id {shown(doc)} (column {cols.id!r}) is also the id at "
                    f"{source.where(seen[doc])}; traces are matched by id, so each id must be "
                    "one report"
                )
            repeats.append(i)
        for aspect in cols.aspects:
            if not doc:
                dropped[EMPTY_ID] += 1
                continue
            raw = row[cols.text[aspect]]
            text, counts = section_report(raw, cleaning)
            if counts is not None and tally is not None:
                tally.add(doc, aspect, raw, text, counts)
            if not text:
                dropped[EMPTY_TEXT] += 1
                continue
            gold = None
            if cols.label is not None:
                gold = _gold(row[cols.label[aspect]], job, aspect, source.where(i), doc)
                if gold is None:
                    dropped[BAD_LABEL] += 1
                    continue
            examples.append(
                Example(
                    id=doc,
                    aspect=aspect,
                    text=text,
                    gold=gold,
                    where=source.where(i),
                    chosen=cell_text(row[cols.chosen[aspect]]) if cols.chosen else None,
                    rejected=cell_text(row[cols.rejected[aspect]]) if cols.rejected else None,
                    answers=tuple(cell_text(row[c]) for c in cols.answers[aspect])
                    if cols.answers
                    else None,
                )
            )
    if repeats and job.method != "dpo":  # DPO: several preference rows per report are usual
        console.warn(
            f"{len(repeats)} row(s) repeat an earlier row's id (first: {source.where(repeats[0])});"
            " rows of one id count as one document in the split but are scored apart: check "
            "for copied rows"
        )
    return examples, dropped


def cell_text(value: Any) -> str:
    """A table cell as text: None is empty, numbers keep their digits (an id 0 is "0")."""
    return "" if value is None else str(value).strip()


def _gold(value, job: Job, aspect: str, where: str, doc: str):
    data = job.recipe.data
    kind = job.task.label_kind(aspect)
    try:
        if value is None or (isinstance(value, str) and not value.strip()):
            if kind.kind != "dimensions":
                raise LabelError("the label is empty")
        label = kind.decode_gold(value, data.label_codec)
        rule = getattr(kind, "rule", None)
        broken = rule.violation(label) if rule is not None else None
        if broken:
            raise LabelError(f"{label} breaks the task's label constraints: {broken}")
        return list(label) if isinstance(label, tuple) else label
    except LabelError as exc:
        if data.on_bad_label == "drop":
            return None
        column = job.columns.label[aspect]
        raise UserError(
            f"{where}: id {shown(doc)}: column {column!r} (data.columns.label.{aspect}): {exc}; "
            "fix the label, or set data.on_bad_label: drop to skip such rows"
        ) from None


# ----------------------------------------------------------------------------- builders


def _base(ex: Example, task: TaskSpec) -> Row:
    try:
        prompt = task.messages(ex.aspect, ex.text)
    except UserError as exc:
        raise UserError(f"{ex.where}: id {shown(ex.id)}: {exc}") from None
    return {"id": ex.id, "aspect": ex.aspect, "prompt": prompt, "gold": ex.gold, "text": ex.text}


def _assistant(content: str) -> list[Message]:
    return [{"role": "assistant", "content": content}]


def grpo_rows(examples: list[Example], task: TaskSpec) -> tuple[list[Row], Counter]:
    """GRPO: prompt + gold (TRL passes ``gold``, ``id`` and ``aspect`` to the rewards)."""
    return [_base(ex, task) for ex in examples], Counter()


def sft_rows(
    examples: list[Example],
    task: TaskSpec,
    traces: dict[tuple[str, str], str] | None,
    missing: str,
    held_out: set[str] | frozenset[str] = frozenset(),
    stats: Counter | None = None,
) -> tuple[list[Row], Counter]:
    """SFT: prompt + ``<think>\\nTRACE\\n</think>\\n<label>\\n[…]\\n</label>``.

    Without a trace file every think block is empty; with one, a training example without a
    trace is dropped (``missing: drop``, counted as no_trace) or gets an empty think block.
    Held-out documents (``held_out``) are never dropped for a missing trace: evaluation reads
    only their prompts and gold labels. ``stats`` counts ``with_trace`` / ``without_trace``.
    """
    rows, dropped = [], Counter()
    stats = stats if stats is not None else Counter()
    for ex in examples:
        if ex.gold is None:
            raise UserError(
                f"{ex.where}: id {shown(ex.id)}: method sft writes the gold label into the completion, "
                "but the recipe declares no label column; set data.columns.label"
            )
        trace = "" if traces is None else traces.get((ex.id, ex.aspect))
        stats["without_trace" if not trace else "with_trace"] += 1
        if trace is None:
            if missing == "drop" and ex.id not in held_out:
                dropped[NO_TRACE] += 1
                stats["without_trace"] -= 1
                continue
            trace = ""
        completion = task.completion(trace, ex.gold, ex.aspect)
        rows.append({**_base(ex, task), "completion": _assistant(completion)})
    return rows, dropped


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


def dpo_rows(
    examples: list[Example], task: TaskSpec, rule: str | None = None
) -> tuple[list[Row], Counter]:
    """DPO: prompt + chosen/rejected answers; empty answers and identical pairs are counted out.

    With ``rule`` (data.pairs), each example's pair is chosen from its answers by `choose_pair`.
    """
    rows, dropped = [], Counter()
    for ex in examples:
        if rule is not None and ex.answers is not None:
            pair = choose_pair(ex.answers, ex.gold, task.label_kind(ex.aspect), rule)
            if isinstance(pair, str):
                dropped[pair] += 1
                continue
            ex = replace(ex, chosen=pair[0], rejected=pair[1])
        if not ex.chosen or not ex.rejected:
            dropped[EMPTY_ANSWER] += 1
        elif ex.chosen == ex.rejected:
            dropped[IDENTICAL_PAIR] += 1
        else:
            rows.append(
                {
                    **_base(ex, task),
                    "chosen": _assistant(ex.chosen),
                    "rejected": _assistant(ex.rejected),
                }
            )
    return rows, dropped


def build_rows(
    job: Job,
    examples: list[Example],
    held_out: set[str] | frozenset[str] = frozenset(),
    stats: Counter | None = None,
) -> tuple[list[Row], Counter]:
    """The method's rows for ``examples`` (``held_out``: the test documents; ``stats``: SFT
    trace counts)."""
    method, task = job.method, job.task
    if method == "sft":
        spec = job.recipe.data.traces
        traces = load_traces(job) if spec is not None else None
        missing = spec.missing if spec else "empty"
        return sft_rows(examples, task, traces, missing, held_out, stats)
    if method == "dpo":
        pairs = job.recipe.data.pairs
        return dpo_rows(examples, task, pairs.choose_by if pairs is not None else None)
    return grpo_rows(examples, task)


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
