"""One process's share of a prediction: its sections generated in chunks into its journal.

Every finished chunk is appended to the journal before the next is asked, so an interruption
loses at most one chunk and ``--resume`` asks nothing twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import journal
from llmscisci_cfg.predict.confidence import confidence
from llmscisci_cfg.predict.options import PredictOptions
from llmscisci_cfg.predict.settings import settings
from llmscisci_cfg.recipe.resolve import Job

#: Sections generated per engine call (and journalled together).
CHUNK = 64


def predict_share(
    job: Job, table, rows: list, output: Path, opts: PredictOptions, rank: int, world: int, echo
) -> None:
    """Generate this process's rows (``row % world == rank``) not yet in any journal. A
    journal that holds nothing generated when this fails (a server that cannot be reached, a
    missing API key) is removed: there is nothing to resume."""
    from llmscisci_cfg.predict.items import read
    from llmscisci_cfg.predict.sections import Sections

    done = journal.read(output)
    check_resumed_rows(job, done, rows, output)
    context = Sections.create(job, opts.device, table)
    items = []
    for index, row in enumerate(rows):
        if index % world != rank:
            continue
        for aspect in job.aspects:
            if (index, aspect) not in done:
                items.append(context.item(index, aspect, row))
    todo = [item for item in items if item.requests]
    engine = context.engine() if todo else None
    log = journal.Journal(journal.path_for(output, rank, world), settings(job))
    generated = 0
    try:
        log.write([entry(item) for item in items if not item.requests])
        if todo:
            echo(
                f"predict: {len(todo)} sections with {context.engine_name()} ({len(items) - len(todo)} skipped)"
            )
        decide_compile(engine, [r for item in todo for r in item.requests])
        with _progress(len(todo), world) as bar:
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                requests = [r for item in chunk for r in item.requests]
                completions = engine.generate(requests)
                k, entries = 0, []
                for item in chunk:
                    mine = completions[k : k + len(item.requests)]
                    k += len(item.requests)
                    entries.append(entry(item, read(job.task, item, mine), mine))
                generated += len(entries)  # before writing: an interrupted write keeps the journal
                log.write(entries)
                bar.update(len(chunk))
                bar.set_postfix_str(f"{engine.stats.tokens_per_second:.0f} tok/s")
        if engine is not None:
            stats_path = output.with_name(f"{output.name}.stats.rank{rank}.json")
            stats_path.write_text(json.dumps(engine.stats.as_dict()), encoding="utf-8")
    except BaseException:
        log.close()
        if not done and not generated:
            log.path.unlink(missing_ok=True)
        raise
    log.close()


def _progress(total: int, world: int):
    """One progress line for the sections (rows done, tokens/s); none in sharded workers."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predict", unit="section", disable=world > 1 or total == 0)


def entry(item, outcome=None, completions=None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "row": item.row,
        "aspect": item.aspect,
        "id": item.id,
        "reason": item.reason,
        "truncated": item.truncated,
        "shots": item.shots,
        "pred": None,
        "raw": None,
        "valid": False,
        "note": "",
    }
    if outcome is not None:
        entry |= {
            "pred": outcome.pred,
            "raw": outcome.raw,
            "valid": outcome.valid,
            "note": outcome.note,
        }
        entry["prompt_tokens"] = sum(c[0].prompt_tokens for c in completions)
        entry["completion_tokens"] = sum(c[0].completion_tokens for c in completions)
        if len(completions) == 1:  # one answer: its label's probability
            value, why = confidence(completions[0][0]) if outcome.valid else (None, "invalid")
            entry["confidence"] = None if value is None else round(value, 6)
            entry["confidence_note"] = why
    return entry


def check_resumed_rows(job: Job, done: dict, rows: list[dict], output: Path) -> None:
    """`UserError` when a journal entry's document id is not the table's at that row: the
    input was re-sorted or edited since the interrupted run, and its answers would land on
    other rows."""
    if not done or not job.columns.id:
        return
    from llmscisci_cfg.data.examples import cell_text

    for (index, aspect), entry in sorted(done.items()):
        if index >= len(rows):
            continue
        now = cell_text(rows[index].get(job.columns.id))
        if str(entry.get("id", "")) != now:
            raise UserError(
                f"--resume: row {index + 1} ({aspect}) of the interrupted run was id "
                f"{entry.get('id')!r}, the table's row {index + 1} is now id {now!r}: "
                f"{job.data.ref} changed since; start again with --overwrite (journal next "
                f"to {output})"
            )


def decide_compile(engine: Any, requests: list[Any]) -> None:
    """``compile: auto`` over the whole job, not per chunk: a long predict compiles once (a
    chunk alone never has enough decode steps to pay for it)."""
    if not getattr(engine, "may_compile", False) or engine.compiled or not requests:
        return
    from llmscisci_cfg.models.generate import worth_compiling

    batches = -(-len(requests) // engine.batch_size)
    engine.compiled = worth_compiling(batches * requests[0].sampling.max_new_tokens)
