"""The streaming build: rows in Arrow batches → examples → the method's rows → token counts,
written to Arrow files on disk as it goes; then the length filter and the splits.

Nothing holds the corpus as Python objects: `datasets.Dataset.map` hands each batch of rows
(`BATCH`) to `_Pass.batch`, which reads it (`examples.read_row`), builds the method's rows
(`examples.MethodRows`), counts their tokens (`measure.Prompts`) and returns columns that
go straight to an Arrow file. What is counted on the way (drops by reason and split, what
cleaning changed, SFT traces, unreadable labels) goes into a `Tally`. The length filter then
works on the token-count columns alone; only the examples it truncates are rendered again.

>>> # build_splits(job, tokenizer, workdir) -> Built                     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.data.examples import (
    BAD_LABEL,
    CLEAN_SAMPLES,
    CleanTally,
    MethodRows,
    Row,
    read_row,
)
from llmscisci_cfg.data.labels import Labels, join_report, load_labels
from llmscisci_cfg.data.measure import Prompts
from llmscisci_cfg.data.report import BuildReport
from llmscisci_cfg.data.sources import quiet_datasets
from llmscisci_cfg.data.splits import SPLIT, SplitRows, plan_splits
from llmscisci_cfg.recipe.resolve import Job

if TYPE_CHECKING:
    from datasets import Dataset

#: Source rows per batch of the examples pass.
BATCH = 1000
#: Unreadable labels named in the report (every one is counted).
BAD_SHOWN = 20
ANSWERS = {"sft": ("completion",), "dpo": ("chosen", "rejected"), "grpo": ()}


def features(job: Job) -> Any:
    """The Arrow types of the built rows: messages are lists of {role, content}; ``gold`` is
    an int for a single-category answer, else a list of ints (one-hot, or a level per
    dimension), null without labels."""
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    single = job.task.answer == "single" and job.columns.label is not None
    columns: dict[str, Any] = {
        "id": Value("string"),
        "aspect": Value("string"),
        "prompt": messages,
        "gold": Value("int64") if single else List(Value("int64")),
    }
    for name in ANSWERS[job.method]:
        columns[name] = messages
    return Features(columns)


def _work_features(job: Job) -> Any:
    """`features` plus what the build needs on the way: the split, the section text, token
    counts and the sha256 of the text and of the prompt."""
    from datasets import Value

    out = features(job).copy()
    out["split"] = Value("string")
    out["text"] = Value("string")
    out["prompt_tokens"] = Value("int64")
    out["total_tokens"] = Value("int64")
    out["text_sha256"] = Value("string")
    out["prompt_sha256"] = Value("string")
    out["rows_entry"] = Value("string")
    out["prompt_entry"] = Value("string")
    return out


@dataclass
class Tally:
    """What the examples pass counted: per split, drops by reason and what cleaning changed per
    aspect; the first changed sections (before/after) and unreadable labels; SFT traces."""

    dropped: dict[str, Counter] = field(default_factory=dict)
    cleaning: dict[str, CleanTally] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)  # the first changed sections
    traces: Counter = field(default_factory=Counter)
    bad_labels: list[list[str]] = field(default_factory=list)

    def merge(self, later: Tally) -> None:
        """Add the counts of the rows after these (another process's share)."""
        for split, counts in later.dropped.items():
            self.dropped.setdefault(split, Counter()).update(counts)
        for split, tal in later.cleaning.items():
            mine = self.cleaning.setdefault(split, CleanTally())
            for aspect, counts in tal.counts.items():
                into = mine.counts.setdefault(aspect, dict.fromkeys(counts, 0))
                for key, n in counts.items():
                    into[key] += n
            mine.samples = (mine.samples + tal.samples)[:CLEAN_SAMPLES]
        self.samples = (self.samples + later.samples)[:CLEAN_SAMPLES]
        self.traces.update(later.traces)
        self.bad_labels = (self.bad_labels + later.bad_labels)[:BAD_SHOWN]

    def cleaning_overall(self) -> dict[str, dict[str, int]]:
        """What cleaning changed per aspect, over every split."""
        out: dict[str, dict[str, int]] = {}
        for tal in self.cleaning.values():
            for aspect, counts in tal.counts.items():
                into = out.setdefault(aspect, dict.fromkeys(counts, 0))
                for key, n in counts.items():
                    into[key] += n
        return out


@dataclass
class _Pass:
    """The examples pass over batches of rows; in each process it adds to its own ``tally``."""

    job: Job
    plan: SplitRows
    prompts: Prompts
    maker: MethodRows
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
                features=_work_features(self.job),
                cache_file_name=str(path),
                new_fingerprint=f"llmscisci-examples-{offset}",
                load_from_cache_file=False,
            )

    def batch(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        job, tally = self.job, self.tally
        names = [c for c in batch if c != SPLIT]
        traces = job.method == "sft" and job.recipe.data.traces is not None
        built: list[Row] = []
        for k, index in enumerate(indices):
            split, where = batch[SPLIT][k], self.plan.where(self.offset + index)
            row = {c: batch[c][k] for c in names}
            drops = tally.dropped.setdefault(split, Counter())
            for slot in read_row(row, where, job, self.labels):
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
                made = self.maker.row(slot.example, held=split != "train")
                if isinstance(made, str):
                    drops[made] += 1
                    continue
                if traces:
                    tally.traces[
                        "with_trace" if self.maker.trace(slot.example) else "without_trace"
                    ] += 1
                made["split"] = split
                built.append(made)
        return self.columns(built)

    def columns(self, built: list[Row]) -> dict[str, list]:
        prompt, total = self.prompts.lengths(built, self.job.method)
        out: dict[str, list] = {name: [r[name] for r in built] for name in _work_names(self.job)}
        out["prompt_tokens"] = prompt
        out["total_tokens"] = total if total is not None else [None] * len(built)
        out["text_sha256"] = [_sha(r["text"]) for r in built]
        out["prompt_sha256"] = [prompt_sha256(r["prompt"]) for r in built]
        out["rows_entry"] = [entry(r, d) for r, d in zip(built, out["text_sha256"], strict=True)]
        out["prompt_entry"] = [
            entry(r, d) for r, d in zip(built, out["prompt_sha256"], strict=True)
        ]
        return out


def values(ds: Dataset, column: str) -> list:
    """A column as a Python list (``ds[column][:]``: one Arrow conversion; iterating the
    lazy column would read it row by row)."""
    return ds[column][:]


def _work_names(job: Job) -> list[str]:
    return ["id", "aspect", "prompt", "gold", *ANSWERS[job.method], "split", "text"]


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
    plan: SplitRows
    tally: Tally
    labels: dict[str, Any]  # the join's summary (data.labels), else {}


def build_examples(job: Job, tokenizer: Any, workdir: Path) -> Built:
    """The examples pass: every split's examples written to Arrow files in ``workdir`` (by
    `workers` processes, each over a contiguous share of the rows; the files are read back
    in row order, so the result is the same for any number of processes)."""
    from datasets import Dataset, concatenate_datasets

    labels = load_labels(job)
    plan = plan_splits(job, labels)
    join = join_report(labels, plan.rows[job.columns.id][:]).summary() if labels else {}
    prompts = Prompts(tokenizer, job.task)
    work = _Pass(job, plan, prompts, MethodRows.of(job, prompts.messages), labels, Tally())
    n = workers(len(plan.rows))
    bounds = [len(plan.rows) * k // n for k in range(n + 1)]
    if n == 1:
        examples = work.run(plan.rows, 0, workdir / "examples-0.arrow")
        return Built(examples, plan, work.tally, join)
    tallies = in_processes(work, bounds, workdir)
    tally = tallies[0]
    for later in tallies[1:]:
        tally.merge(later)
    with quiet_datasets():
        parts = [Dataset.from_file(str(workdir / f"examples-{k}.arrow")) for k in range(n)]
        examples = concatenate_datasets(parts)
    return Built(examples, plan, tally, join)


#: Rows per process below which the examples pass does not fork (forking costs ~0.1 s).
ROWS_PER_WORKER = 5_000
WORKERS_ENV = "LLMSCISCI_DATA_WORKERS"


def workers(rows: int) -> int:
    """Processes for the examples pass: one per CPU this process may use (at most 8), fewer
    when a share would be under `ROWS_PER_WORKER` rows, one without ``fork``.
    ``$LLMSCISCI_DATA_WORKERS`` sets the most."""
    if not hasattr(os, "fork"):
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


# ----------------------------------------------------------------------------- the splits


@dataclass
class _Lengths:
    """What the length filter decided: rows to drop (position -> reason), rows whose section
    it cut (position -> the new row), and its counts per split and aspect."""

    limits: Any = None
    dropped: dict[int, str] = field(default_factory=dict)
    cut: dict[int, Row] = field(default_factory=dict)
    counts: dict[str, dict[str, Counter]] = field(default_factory=dict)


@dataclass
class _Columns:
    """The examples' small columns as lists (one Arrow conversion each), positions per split,
    and the token counts and prompt entries after the length filter."""

    ids: list[str]
    aspects: list[str]
    prompt: list[int]
    total: list[int | None]
    rows_entry: list[str]
    prompt_entry: list[str]
    positions: dict[str, list[int]]


def _columns(ex: Dataset, names: tuple[str, ...]) -> _Columns:
    positions: dict[str, list[int]] = {name: [] for name in names}
    for i, name in enumerate(values(ex, "split")):
        positions[name].append(i)
    return _Columns(
        values(ex, "id"),
        values(ex, "aspect"),
        values(ex, "prompt_tokens"),
        values(ex, "total_tokens"),
        values(ex, "rows_entry"),
        values(ex, "prompt_entry"),
        positions,
    )


def assemble(job: Job, tokenizer: Any, built: Built) -> tuple[dict[str, Dataset], BuildReport]:
    """The final splits (selections of the examples, the length filter applied) and the
    report of the whole build."""
    ex = built.examples
    cols = _columns(ex, built.plan.names)
    lengths = _length_filter(job, tokenizer, ex, cols)
    for i, row in lengths.cut.items():
        cols.prompt[i], cols.total[i] = row["prompt_tokens"], row["total_tokens"]
        cols.prompt_entry[i] = entry(row, prompt_sha256(row["prompt"]))
    splits: dict[str, Dataset] = {}
    final = list(features(job))
    report = BuildReport(rows=len(built.plan.rows), examples=0, split_by=built.plan.by)
    rows_per_split = built.plan.counts()
    for name, members in cols.positions.items():
        kept = [i for i in members if i not in lengths.dropped]
        part = (ex.select(kept) if len(kept) != len(ex) else ex).select_columns(final)
        cut = {k: lengths.cut[i] for k, i in enumerate(kept) if i in lengths.cut}
        splits[name] = _replace(part, cut) if cut else part
        drops = built.tally.dropped.get(name, Counter()) + Counter(
            lengths.dropped[i] for i in members if i in lengths.dropped
        )
        entry_ = _split_entry(job, built, name, kept, cols, rows_per_split.get(name, 0))
        report.per_split[name] = entry_ | {
            "dropped": dict(sorted(drops.items())),
            "truncated": len(cut),
        }
    _totals(report, job, built, lengths, cols)
    return splits, report


def _length_filter(job: Job, tokenizer: Any, ex: Dataset, cols: _Columns) -> _Lengths:
    """Limits from the train split's token counts; over-long rows of every split dropped or
    (strategy truncate) cut to fit (`lengthfilter`)."""
    from llmscisci_cfg.data.lengthfilter import TRUNCATED, fitted, limits_for, over, token_measure

    spec = job.recipe.data.length_filter
    out = _Lengths()
    if spec is None:
        return out
    prompt = cols.prompt
    total = cols.total if job.method != "grpo" else [None] * len(prompt)
    train = cols.positions.get("train", [])
    out.limits = limits_for(
        spec,
        [prompt[i] for i in train],
        None if job.method == "grpo" else [total[i] for i in train],
    )
    fit = fit_section(job, tokenizer) if spec.strategy == "truncate" else None
    measure = token_measure(tokenizer)
    for name, members in cols.positions.items():
        counts = out.counts.setdefault(name, {})
        for i in members:
            mine = counts.setdefault(cols.aspects[i], Counter())
            reason = over(out.limits, prompt[i], total[i])
            if reason is None:
                continue
            if fit is not None:
                cut = fitted(ex[i], fit, out.limits, prompt[i], total[i], job.method, measure)
                if cut is not None:
                    p, t = _measured(cut, job.method, measure)
                    out.cut[i] = {**cut, "prompt_tokens": p, "total_tokens": t}
                    mine[TRUNCATED] += 1
                    continue
            mine[reason] += 1
            out.dropped[i] = reason
    return out


def _measured(row: Row, method: str, measure: Any) -> tuple[int, int | None]:
    from llmscisci_cfg.data.lengthfilter import lengths

    p, t = lengths([row], method, measure)
    return p[0], (t[0] if t else None)


def fit_section(job: Job, tokenizer: Any):
    """`lengthfilter.Fit` for ``strategy: truncate``: the row with its section cut by
    `data.truncate.fit` (as `predict` cuts) so the rendered prompt has at most N tokens."""
    from llmscisci_cfg.data.truncate import TokenCount, fit
    from llmscisci_cfg.models import chat

    spec = job.recipe.data.length_filter
    counter = TokenCount(tokenizer)

    def fit_row(row: Row, max_tokens: int) -> Row:
        def messages(text: str) -> list[dict[str, str]]:
            return job.task.messages(row["aspect"], text)

        def render(text: str) -> str:
            return chat.render(tokenizer, messages(text), add_generation_prompt=True)

        _, cut, _ = fit(render, row["text"], max_tokens, spec.truncate, counter)
        return {**row, "prompt": messages(cut)}

    return fit_row


def _replace(part: Dataset, cut: dict[int, Row]) -> Dataset:
    """``part`` with the prompts of the rows in ``cut`` (position -> row) replaced."""

    def swap(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        for k, i in enumerate(indices):
            if i in cut:
                batch["prompt"][k] = cut[i]["prompt"]
        return batch

    with quiet_datasets():
        return part.map(
            swap,
            batched=True,
            batch_size=BATCH,
            with_indices=True,
            new_fingerprint=f"llmscisci-cut-{len(cut)}",
            keep_in_memory=False,
        )


def set_sha256(entries) -> str:
    """sha256 naming a set of examples: over their entries (`entry`: ``[id, aspect, gold,
    sha256]`` as JSON) sorted, as one JSON list. With the text's sha256 (the section as read
    and cleaned, before any truncation) it names the rows: two evaluations with the same value
    scored the same documents, aspects, gold labels and texts. With the prompt's sha256
    (`prompt_sha256`, after truncation) it names what the model read."""
    texts = sorted(e if isinstance(e, str) else json.dumps(list(e)) for e in entries)
    return hashlib.sha256(("[" + ", ".join(texts) + "]").encode()).hexdigest()


def _split_entry(
    job: Job, built: Built, name: str, kept: list[int], cols: _Columns, rows: int
) -> dict[str, Any]:
    """One split of the report: rows read, documents and examples kept, both sha256, what
    cleaning changed per aspect, and for a split file the file and its sha256 (the caller
    adds drops by reason and the sections the length filter cut)."""
    entry_: dict[str, Any] = {
        "rows": rows,
        "documents": len({cols.ids[i] for i in kept}),
        "examples": len(kept),
        "sha256": set_sha256(cols.rows_entry[i] for i in kept),
        "prompts_sha256": set_sha256(cols.prompt_entry[i] for i in kept),
    }
    if job.recipe.data.clean is not None:
        tally = built.tally.cleaning.get(name)
        entry_["cleaning"] = tally.counts if tally is not None else {}
    if job.splits is not None and name in job.splits:
        file = job.splits[name]
        entry_["file"], entry_["file_sha256"] = str(file.require()), file.sha256
    return entry_


def _totals(report: BuildReport, job: Job, built: Built, lengths: _Lengths, cols: _Columns) -> None:
    """The report's totals over the splits, the length filter's figures, token lengths."""
    tally = built.tally
    per = report.per_split
    report.examples = sum(e["examples"] for e in per.values())
    dropped: Counter = Counter()
    for e in per.values():
        dropped.update(e["dropped"])
    report.dropped = dict(sorted(dropped.items()))
    report.splits = {name: e["examples"] for name, e in per.items()}
    report.documents = {name: e["documents"] for name, e in per.items()}
    kept = {
        name: [i for i in members if i not in lengths.dropped]
        for name, members in cols.positions.items()
    }
    splits_of: dict[str, set[str]] = {}
    for name, members in kept.items():
        for i in members:
            splits_of.setdefault(cols.ids[i], set()).add(name)
    report.group_overlap = sum(1 for names in splits_of.values() if len(names) > 1)
    report.test_set_sha256 = per.get("test", {}).get("sha256", "")
    report.test_prompts_sha256 = per.get("test", {}).get("prompts_sha256", "")
    report.labels = built.labels
    report.bad_labels = tally.bad_labels
    spec = job.recipe.data.length_filter
    if spec is not None:
        limits = lengths.limits
        report.length_limits = {"prompt": limits.prompt, "total": limits.total}
        report.length = {
            "strategy": spec.strategy
            + (f" ({spec.truncate})" if spec.strategy == "truncate" else ""),
            "splits": {
                n: {a: dict(c) for a, c in per_aspect.items()}
                for n, per_aspect in lengths.counts.items()
            },
        }
        report.test_excluded = [
            [cols.ids[i], cols.aspects[i], lengths.dropped[i]]
            for i in cols.positions.get("test", [])
            if i in lengths.dropped
        ]
    train = kept.get("train", [])
    report.token_lengths = {
        "prompt": max((cols.prompt[i] for i in train), default=None),
        "total": None
        if job.method == "grpo"
        else max((cols.total[i] for i in train), default=None),
    }  # the longest train example as the trainer sees it: what pads a batch (plan's memory)
    if job.method == "grpo":  # rollouts of the held-out splits too (eval): what sizes a KV cache
        every = [i for members in kept.values() for i in members]
        report.token_lengths["prompt_any"] = max((cols.prompt[i] for i in every), default=0)
    if job.recipe.data.clean is not None:
        report.cleaning, report.clean_samples = tally.cleaning_overall(), tally.samples
    if job.recipe.data.traces is not None and job.method == "sft":
        report.traces = {k: tally.traces[k] for k in ("with_trace", "without_trace")}
