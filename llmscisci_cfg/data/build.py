"""The streaming build's examples pass: rows in Arrow batches → examples → the method's rows
→ token counts, written to Arrow files on disk as it goes (`data.assemble` makes the splits).

Nothing holds the corpus as Python objects: `datasets.Dataset.map` hands each batch of rows
(`BATCH`) to `_Pass.batch`, which reads it (`examples.read_row`), builds the method's rows
(the caller's `rows.RowBuilder`), counts their tokens (`measure.Prompts`) and returns columns
that go straight to an Arrow file. What is counted on the way (drops by reason and split,
what cleaning changed, what the method counts (SFT traces), unreadable labels) goes into a
`Tally`. Several processes can share the rows (`workers`): each writes its own file, read
back in row order.

>>> build_examples(job, rows, tokenizer, workdir).examples.column_names      # doctest: +SKIP
['id', 'aspect', 'prompt', 'gold', 'split', 'text', 'prompt_tokens', 'total_tokens', ...]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.data.clean import options_of
from llmscisci_cfg.data.examples import BAD_LABEL, CLEAN_SAMPLES, CleanTally, read_row
from llmscisci_cfg.data.labels import Labels, join_report, load_labels
from llmscisci_cfg.data.measure import Prompts
from llmscisci_cfg.data.rows import Row, RowBuilder, RowMaker, row_columns
from llmscisci_cfg.data.sources import quiet_datasets
from llmscisci_cfg.data.splits import SPLIT, SplitRows, plan_splits
from llmscisci_cfg.recipe.resolve import Job

if TYPE_CHECKING:
    from datasets import Dataset

#: Source rows per batch of the examples pass.
BATCH = 1000
#: Unreadable labels named in the report (every one is counted).
BAD_SHOWN = 20


def features(job: Job, rows: RowBuilder) -> Any:
    """The Arrow types of the built rows: messages (the prompt, the method's answer columns)
    are lists of {role, content}; ``gold`` is an int for a single-category answer, else a list
    of ints (one-hot, or a level per dimension), null without labels; the method's other
    columns have their own types."""
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    single = job.task.answer == "single" and job.columns.label is not None
    columns: dict[str, Any] = {
        "id": Value("string"),
        "aspect": Value("string"),
        "prompt": messages,
        "gold": Value("int64") if single else List(Value("int64")),
    }
    for name in rows.answer_columns:
        columns[name] = messages
    for name, dtype in rows.extra_columns.items():
        columns[name] = Value(dtype)
    return Features(columns)


def _work_features(job: Job, rows: RowBuilder) -> Any:
    """`features` plus what the build needs on the way: the split, the section text, token
    counts, and each example's entry in its split's two sha256 (`entry`: of the text as read,
    and of the prompt)."""
    from datasets import Value

    out = features(job, rows).copy()
    out["split"] = Value("string")
    out["text"] = Value("string")
    out["prompt_tokens"] = Value("int64")
    out["total_tokens"] = Value("int64")
    out["rows_entry"] = Value("string")
    out["prompt_entry"] = Value("string")
    return out


@dataclass
class Tally:
    """What the examples pass counted: per split, drops by reason and what cleaning changed per
    aspect; the first changed sections (before/after) and unreadable labels; what the method
    counted of its rows (`RowBuilder.counts`: SFT's traces)."""

    dropped: dict[str, Counter] = field(default_factory=dict)
    cleaning: dict[str, CleanTally] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)  # the first changed sections
    method: Counter = field(default_factory=Counter)
    bad_labels: list[list[str]] = field(default_factory=list)

    def merge(self, later: Tally) -> None:
        """Add the counts of the rows after these (another process's share)."""
        for split, counts in later.dropped.items():
            self.dropped.setdefault(split, Counter()).update(counts)
        for split, tal in later.cleaning.items():
            mine = self.cleaning.setdefault(split, CleanTally())
            _add_counts(mine.counts, tal.counts)
            mine.samples = (mine.samples + tal.samples)[:CLEAN_SAMPLES]
        self.samples = (self.samples + later.samples)[:CLEAN_SAMPLES]
        self.method.update(later.method)
        self.bad_labels = (self.bad_labels + later.bad_labels)[:BAD_SHOWN]

    def cleaning_overall(self) -> dict[str, dict[str, int]]:
        """What cleaning changed per aspect, over every split."""
        out: dict[str, dict[str, int]] = {}
        for tal in self.cleaning.values():
            _add_counts(out, tal.counts)
        return out


def _add_counts(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    """Add per-aspect cleaning counts (`CleanTally.counts`) into ``into``."""
    for aspect, counts in more.items():
        mine = into.setdefault(aspect, dict.fromkeys(counts, 0))
        for key, n in counts.items():
            mine[key] += n


@dataclass
class _Pass:
    """The examples pass over batches of rows; in each process it adds to its own ``tally``."""

    job: Job
    rows: RowBuilder
    plan: SplitRows
    prompts: Prompts
    maker: RowMaker
    labels: Labels | None
    tally: Tally
    offset: int = 0  # index in ``plan.rows`` of this process's first row

    def run(self, rows: Dataset, offset: int, path: Path) -> Dataset:
        """The examples of ``rows`` (``plan.rows`` from ``offset`` on) written to ``path``."""
        self.offset = offset
        with quiet_datasets():
            return rows.map(
                self.batch,
                batched=True,
                batch_size=BATCH,
                with_indices=True,
                remove_columns=rows.column_names,
                features=_work_features(self.job, self.rows),
                cache_file_name=str(path),
                new_fingerprint=f"llmscisci-examples-{offset}",
                load_from_cache_file=False,
            )

    def batch(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        job, tally = self.job, self.tally
        names = [c for c in batch if c != SPLIT]
        cleaning = options_of(job.recipe.data.clean)
        built: list[Row] = []
        for k, index in enumerate(indices):
            split, where = batch[SPLIT][k], self.plan.where(self.offset + index)
            row = {c: batch[c][k] for c in names}
            drops = tally.dropped.setdefault(split, Counter())
            for slot in read_row(row, where, job, self.labels, cleaning):
                if slot.counts is not None:
                    tal = tally.cleaning.setdefault(split, CleanTally())
                    seen = len(tal.samples)
                    tal.add(slot.id, slot.aspect, slot.raw, slot.text, slot.counts)
                    if len(tal.samples) > seen and len(tally.samples) < CLEAN_SAMPLES:
                        tally.samples.append(tal.samples[-1])
                if slot.example is None:
                    drops[slot.reason] += 1
                    if slot.reason == BAD_LABEL and len(tally.bad_labels) < BAD_SHOWN:
                        joined = self.labels is not None and slot.id in self.labels.lines
                        at = self.labels.where(slot.id) if joined else where
                        tally.bad_labels.append([slot.id, slot.aspect, at, slot.note or ""])
                    continue
                for made in self.maker.rows(slot.example, split != "train", tally.method):
                    if isinstance(made, str):
                        drops[made] += 1
                    else:
                        made["split"] = split
                        built.append(made)
        return self.columns(built)

    def columns(self, built: list[Row]) -> dict[str, list]:
        prompt, total = self.prompts.lengths(built, self.rows.answer_columns)
        names = [*row_columns(self.rows), "split", "text"]
        out: dict[str, list] = {name: [r[name] for r in built] for name in names}
        out["prompt_tokens"] = prompt
        out["total_tokens"] = total if total is not None else [None] * len(built)
        out["rows_entry"] = [entry(r, _sha(r["text"])) for r in built]
        out["prompt_entry"] = [entry(r, prompt_sha256(r["prompt"])) for r in built]
        return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry(row: Row, digest: str) -> str:
    """One example's entry in a set's sha256 (`set_sha256`): ``[id, aspect, gold, digest]``
    as JSON."""
    return json.dumps([row["id"], row["aspect"], row["gold"], digest])


def prompt_sha256(messages: list[dict[str, str]]) -> str:
    """sha256 of a prompt as the model reads it: each message's role and content, a unit
    separator (U+001F) after each and a record separator (U+001E) after every message."""
    return _sha("".join(f"{m['role']}\x1f{m['content']}\x1f\x1e" for m in messages))


@dataclass
class Built:
    """The examples of every split on disk, and what was counted building them."""

    examples: Dataset  # `_work_features` columns, every split, in row order
    rows: RowBuilder  # the method whose rows they are
    plan: SplitRows
    tally: Tally
    labels: dict[str, Any]  # the join's summary (data.labels), else {}


def build_examples(job: Job, rows: RowBuilder, tokenizer: Any, workdir: Path) -> Built:
    """The examples pass: every split's ``rows`` written to Arrow files in ``workdir`` (by
    `workers` processes, each over a contiguous share of the rows; the files are read back
    in row order, so the result is the same for any number of processes)."""
    from datasets import Dataset, concatenate_datasets

    labels = load_labels(job)
    plan = plan_splits(job, labels)
    join = join_report(labels, plan.rows[job.columns.id][:]).summary() if labels else {}
    prompts = Prompts(tokenizer, job.task)
    maker = rows.maker(job, prompts.messages)
    work = _Pass(job, rows, plan, prompts, maker, labels, Tally())
    n = workers(len(plan.rows))
    bounds = [len(plan.rows) * k // n for k in range(n + 1)]
    if n == 1:
        examples = work.run(plan.rows, 0, workdir / "examples-0.arrow")
        return Built(examples, rows, plan, work.tally, join)
    tallies = in_processes(work, bounds, workdir)
    tally = tallies[0]
    for later in tallies[1:]:
        tally.merge(later)
    with quiet_datasets():
        parts = [Dataset.from_file(str(workdir / f"examples-{k}.arrow")) for k in range(n)]
        examples = concatenate_datasets(parts)
    return Built(examples, rows, plan, tally, join)


#: Rows per process below which the examples pass does not fork (forking costs ~0.1 s).
ROWS_PER_WORKER = 5_000
WORKERS_ENV = "LLMSCISCI_DATA_WORKERS"


def workers(rows: int) -> int:
    """Processes for the examples pass: one per CPU this process may use (at most 8), fewer
    when a share would be under `ROWS_PER_WORKER` rows; one off Linux (where forking a process
    that has loaded ML libraries is not safe). ``$LLMSCISCI_DATA_WORKERS`` sets the most."""
    if not sys.platform.startswith("linux"):
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    most = min(cpus or 1, 8)
    if os.environ.get(WORKERS_ENV, "").strip().isdigit():
        most = max(int(os.environ[WORKERS_ENV]), 1)
    return max(1, min(most, rows // ROWS_PER_WORKER))


def in_processes(work: _Pass, bounds: list[int], workdir: Path) -> list[Tally]:
    """Run the examples pass over each share ``bounds[k]:bounds[k + 1]`` of the rows in a
    forked process (it inherits the job, the tokenizer and the rows; nothing is pickled but
    its `Tally`); the tallies in share order. An error in a share (a bad label that stops the
    build) is raised here, the first share's first."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    running = []
    for k in range(len(bounds) - 1):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_share, args=(work, bounds, k, workdir, send))
        process.start()
        send.close()
        running.append((process, receive))
    outcomes = []
    for process, receive in running:
        try:
            outcomes.append(receive.recv())
        except EOFError:
            outcomes.append(("error", RuntimeError("a data worker died")))
        process.join()
    for kind, value in outcomes:
        if kind == "error":
            raise value
    return [value for _, value in outcomes]


def _share(work: _Pass, bounds: list[int], k: int, workdir: Path, send) -> None:
    try:
        rows = work.plan.rows.select(range(bounds[k], bounds[k + 1]))
        work.run(rows, bounds[k], workdir / f"examples-{k}.arrow")
        send.send(("ok", work.tally))
    except BaseException as exc:  # noqa: BLE001 - carried to the parent, raised there
        try:
            send.send(("error", exc))
        except Exception:  # an exception that does not pickle
            send.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
