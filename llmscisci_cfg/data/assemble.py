"""From the examples on disk to the final splits and the build's report, column by column.

The examples pass (`data.build`) wrote every split's examples to Arrow with their token
counts. Here the length filter decides on those columns alone (numpy: limits from the train
split, the over-long rows found at once); only the rows it truncates are rendered again
(`lengthfilter.fitted`). Each split is then a selection of the examples, and the report is
counted from Arrow columns: examples and documents per split, drops by reason, the documents
found in more than one split, and two sha256 per split (`set_sha256`: the rows, and the
prompts the model reads). Nothing here holds a Python object per example.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.data.build import BATCH, Built, entry, features, prompt_sha256
from llmscisci_cfg.data.report import BuildReport
from llmscisci_cfg.data.rows import Row
from llmscisci_cfg.data.sources import quiet_datasets
from llmscisci_cfg.recipe.resolve import Job

if TYPE_CHECKING:
    import numpy as np
    from datasets import Dataset


@dataclass
class _Lengths:
    """What the length filter decided: rows dropped (position -> reason), rows whose section
    it cut (position -> the row as cut, with its token counts), counts per split and aspect."""

    limits: Any = None
    dropped: dict[int, str] = field(default_factory=dict)
    cut: dict[int, Row] = field(default_factory=dict)
    counts: dict[str, dict[str, Counter]] = field(default_factory=dict)


@dataclass
class _Columns:
    """The examples' token counts (numpy, after the length filter), and each split's rows."""

    prompt: np.ndarray
    total: np.ndarray | None  # None without answers in the data (GRPO)
    positions: dict[str, np.ndarray]  # split -> positions in the examples, in row order

    @classmethod
    def of(cls, ex: Dataset, names: tuple[str, ...], answers: tuple[str, ...]) -> _Columns:
        import numpy as np
        import pyarrow.compute as pc

        table = ex.data.table
        split = table.column("split")
        positions = {
            name: np.flatnonzero(pc.equal(split, name).to_numpy(zero_copy_only=False))
            for name in names
        }
        prompt = table.column("prompt_tokens").to_numpy().astype(np.int64)
        total = None
        if answers:
            total = table.column("total_tokens").to_numpy().astype(np.int64)
        return cls(prompt, total, positions)


def assemble(job: Job, tokenizer: Any, built: Built) -> tuple[dict[str, Dataset], BuildReport]:
    """The final splits (selections of the examples, the length filter applied) and the
    report of the whole build."""
    import numpy as np

    ex, answers = built.examples, built.rows.answer_columns
    cols = _Columns.of(ex, built.plan.names, answers)
    lengths = _length_filter(job, tokenizer, ex, cols, answers)
    prompt_entries = {}  # position -> the entry of a cut prompt (`set_sha256`)
    for i, row in lengths.cut.items():
        cols.prompt[i] = row["prompt_tokens"]
        if cols.total is not None:
            cols.total[i] = row["total_tokens"]
        prompt_entries[i] = entry(row, prompt_sha256(row["prompt"]))
    final = list(features(job, built.rows))
    dropped = np.fromiter(lengths.dropped, dtype=np.int64, count=len(lengths.dropped))
    report = BuildReport(rows=len(built.plan.rows), examples=0, split_by=built.plan.by)
    rows_per_split = built.plan.counts()
    splits: dict[str, Dataset] = {}
    kept: dict[str, np.ndarray] = {}
    for name, members in cols.positions.items():
        kept[name] = members[~np.isin(members, dropped)]
        part = ex.select(kept[name]) if len(kept[name]) != len(ex) else ex
        part = part.select_columns(final)
        cut = {k: lengths.cut[i] for k, i in enumerate(kept[name].tolist()) if i in lengths.cut}
        splits[name] = _replace(part, cut) if cut else part
        drops = built.tally.dropped.get(name, Counter()) + Counter(
            lengths.dropped[i] for i in members.tolist() if i in lengths.dropped
        )
        report.per_split[name] = _split_entry(job, built, name, kept[name], prompt_entries) | {
            "rows": rows_per_split.get(name, 0),
            "dropped": dict(sorted(drops.items())),
            "truncated": len(cut),
        }
        report.per_split[name] = _ordered(report.per_split[name])
    _totals(report, job, built, lengths, cols, kept)
    return splits, report


_ORDER = ("rows", "documents", "examples", "dropped", "truncated", "cleaning")


def _ordered(entry_: dict[str, Any]) -> dict[str, Any]:
    """A split's report entry in a fixed, readable key order."""
    first = {k: entry_[k] for k in _ORDER if k in entry_}
    return first | {k: v for k, v in entry_.items() if k not in first}


# ----------------------------------------------------------------------------- length filter


def _length_filter(
    job: Job, tokenizer: Any, ex: Dataset, cols: _Columns, answers: tuple[str, ...]
) -> _Lengths:
    """Limits from the train split's token counts (`lengthfilter.limits_for`); the rows of
    every split over them found at once, then dropped or (strategy truncate) cut to fit."""
    import numpy as np

    from llmscisci_cfg.data.lengthfilter import (
        PROMPT_TOO_LONG,
        TOTAL_TOO_LONG,
        TRUNCATED,
        fitted,
        limits_for,
        token_measure,
    )

    spec = job.recipe.data.length_filter
    out = _Lengths()
    if spec is None:
        return out
    train = cols.positions.get("train", np.array([], dtype=np.int64))
    totals = None if cols.total is None else cols.total[train].tolist()
    out.limits = limits = limits_for(spec, cols.prompt[train].tolist(), totals)
    over = np.zeros(len(cols.prompt), dtype=bool)
    if limits.prompt is not None:
        over |= cols.prompt > limits.prompt
    if limits.total is not None and cols.total is not None:
        over |= cols.total > limits.total
    fit = fit_section(job, tokenizer) if spec.strategy == "truncate" else None
    measure = token_measure(tokenizer)
    import pyarrow.compute as pc

    aspect = ex.data.table.column("aspect")
    for name, members in cols.positions.items():
        counts = out.counts.setdefault(name, {})
        for a in pc.unique(aspect.take(members)).to_pylist():  # in order of first occurrence
            counts[a] = Counter()
        for i in members[over[members]].tolist():
            row = ex[i]
            prompt = int(cols.prompt[i])
            total = None if cols.total is None else int(cols.total[i])
            reason = PROMPT_TOO_LONG
            if limits.prompt is None or prompt <= limits.prompt:
                reason = TOTAL_TOO_LONG
            mine = counts[row["aspect"]]
            if fit is not None:
                cut = fitted(row, fit, limits, prompt, total, answers, measure)
                if cut is not None:
                    p, t = _measured(cut, answers, measure)
                    out.cut[i] = {**cut, "prompt_tokens": p, "total_tokens": t}
                    mine[TRUNCATED] += 1
                    continue
            mine[reason] += 1
            out.dropped[i] = reason
    return out


def _measured(row: Row, answers: tuple[str, ...], measure: Any) -> tuple[int, int | None]:
    from llmscisci_cfg.data.lengthfilter import lengths

    p, t = lengths([row], answers, measure)
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


# ----------------------------------------------------------------------------- the report


def set_sha256(entries) -> str:
    """sha256 naming a set of examples: over their entries (`build.entry`: ``[id, aspect,
    gold, sha256]`` as JSON) sorted, as one JSON list. With the text's sha256 (the section as
    read and cleaned, before any truncation) it names the rows: two evaluations with the same
    value scored the same documents, aspects, gold labels and texts. With the prompt's sha256
    (`build.prompt_sha256`, after truncation) it names what the model read."""
    texts = sorted(e if isinstance(e, str) else json.dumps(list(e)) for e in entries)
    return _digest(texts)


def _digest(sorted_texts) -> str:
    h = hashlib.sha256(b"[")
    for k, text in enumerate(sorted_texts):
        h.update((", " + text if k else text).encode())
    h.update(b"]")
    return h.hexdigest()


def _column_sha256(ex: Dataset, column: str, rows: np.ndarray, replaced: dict[int, str]) -> str:
    """`set_sha256` of ``column``'s entries at ``rows`` (``replaced``: position -> entry),
    sorted by Arrow (byte order, which is code-point order) and hashed in chunks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    values = ex.data.table.column(column).take(pa.array(rows, pa.int64()))
    mask = np.isin(rows, np.fromiter(replaced, dtype=np.int64, count=len(replaced)))
    if mask.any():
        news = pa.array([replaced[i] for i in rows[mask].tolist()], pa.string())
        values = pc.replace_with_mask(values.combine_chunks(), pa.array(mask), news)
    ordered = values.take(pc.sort_indices(values))

    def texts():
        for chunk in ordered.chunks if hasattr(ordered, "chunks") else [ordered]:
            for start in range(0, len(chunk), 50_000):
                yield from chunk.slice(start, 50_000).to_pylist()

    return _digest(texts())


def _split_entry(
    job: Job, built: Built, name: str, kept: np.ndarray, prompt_entries: dict[int, str]
) -> dict[str, Any]:
    """One split of the report: documents and examples kept, both sha256, what cleaning
    changed per aspect, and for a split file the file and its sha256."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ex = built.examples
    ids = ex.data.table.column("id").take(pa.array(kept, pa.int64()))
    entry_: dict[str, Any] = {
        "documents": pc.count_distinct(ids).as_py() if len(kept) else 0,
        "examples": len(kept),
        "sha256": _column_sha256(ex, "rows_entry", kept, {}),
        "prompts_sha256": _column_sha256(ex, "prompt_entry", kept, prompt_entries),
    }
    if job.recipe.data.clean is not None:
        tally = built.tally.cleaning.get(name)
        entry_["cleaning"] = tally.counts if tally is not None else {}
    if job.splits is not None and name in job.splits:
        file = job.splits[name]
        entry_["file"], entry_["file_sha256"] = str(file.require()), file.sha256
    return entry_


def _overlap(ex: Dataset, kept: dict[str, np.ndarray]) -> int:
    """Documents with examples in more than one split."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = ex.data.table.column("id")
    uniques = [pc.unique(column.take(pa.array(k, pa.int64()))) for k in kept.values() if len(k)]
    if len(uniques) < 2:
        return 0
    counts = pc.value_counts(pa.chunked_array(uniques))
    return int(pc.sum(pc.greater(counts.field("counts"), 1)).as_py() or 0)


def _totals(
    report: BuildReport,
    job: Job,
    built: Built,
    lengths: _Lengths,
    cols: _Columns,
    kept: dict[str, np.ndarray],
) -> None:
    """The report's totals over the splits, the length filter's figures, token lengths."""
    import numpy as np
    import pyarrow as pa

    tally = built.tally
    per = report.per_split
    report.examples = sum(e["examples"] for e in per.values())
    dropped: Counter = Counter()
    for e in per.values():
        dropped.update(e["dropped"])
    report.dropped = dict(sorted(dropped.items()))
    report.splits = {name: e["examples"] for name, e in per.items()}
    report.documents = {name: e["documents"] for name, e in per.items()}
    report.group_overlap = _overlap(built.examples, kept)
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
        held = cols.positions.get("test")
        test = [i for i in (held.tolist() if held is not None else []) if i in lengths.dropped]
        table = built.examples.data.table
        at = pa.array(test, pa.int64())
        ids, aspects = (table.column(c).take(at).to_pylist() for c in ("id", "aspect"))
        report.test_excluded = [
            [d, a, lengths.dropped[i]] for d, a, i in zip(ids, aspects, test, strict=True)
        ]
    train = kept.get("train", np.array([], dtype=np.int64))

    def most(values: np.ndarray | None, rows: np.ndarray) -> int | None:
        return int(values[rows].max()) if values is not None and len(rows) else None

    # the longest train example as the trainer sees it: what pads a batch (plan's memory)
    report.token_lengths = {"prompt": most(cols.prompt, train), "total": most(cols.total, train)}
    if not built.rows.answer_columns:  # the policy writes the answers (GRPO's rollouts): the
        # held-out splits' prompts too (eval), the longest of which sizes a KV cache
        every = np.concatenate(list(kept.values())) if kept else np.array([], dtype=np.int64)
        report.token_lengths["prompt_any"] = most(cols.prompt, every) or 0
    if job.recipe.data.clean is not None:
        report.cleaning, report.clean_samples = tally.cleaning_overall(), tally.samples
    if tally.method:
        name = built.rows.counts or built.rows.name
        report.method_counts = {name: dict(sorted(tally.method.items()))}
