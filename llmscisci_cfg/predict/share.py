"""One process's share of a prediction: its sections generated in chunks into its journal.

Every finished chunk is appended to the journal before the next is asked, so an interruption
loses at most one chunk and ``--resume`` asks nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import journal
from llmscisci_cfg.predict.confidence import confidence
from llmscisci_cfg.predict.items import Item, Outcome
from llmscisci_cfg.predict.options import PredictOptions
from llmscisci_cfg.predict.settings import settings
from llmscisci_cfg.predict.table import Inputs
from llmscisci_cfg.recipe.resolve import Job

#: Sections generated per engine call (and journalled together).
CHUNK = 64


def predict_share(
    job: Job,
    inputs: Inputs,
    output: Path,
    opts: PredictOptions,
    rank: int,
    world: int,
    echo: Callable[[str], None],
) -> None:
    """Generate this process's rows (``row % world == rank``) not yet in any journal. A
    journal that holds nothing generated when this fails (a server that cannot be reached, a
    missing API key) is removed: there is nothing to resume."""
    from llmscisci_cfg.predict.items import read
    from llmscisci_cfg.predict.report import write_stats
    from llmscisci_cfg.predict.sections import Sections, check_shots

    done = journal.read(output)
    check_resumed_rows(job, done, inputs.rows, output)
    context = Sections.create(job, opts.device, inputs.table)
    mine = [(i, row) for i, row in enumerate(inputs.rows) if i % world == rank]
    items = [context.item(i, aspect, row) for i, row in mine for aspect in job.aspects]
    check_unchanged(job, done, items, output)
    items = [item for item in items if (item.row, item.aspect) not in done]
    check_shots(job, context, items)
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
                    answers = completions[k : k + len(item.requests)]
                    k += len(item.requests)
                    entries.append(entry(item, read(job.task, item, answers), answers))
                generated += len(entries)  # before writing: an interrupted write keeps the journal
                log.write(entries)
                bar.update(len(chunk))
                bar.set_postfix_str(f"{engine.stats.tokens_per_second:.0f} tok/s")
        if engine is not None:
            write_stats(output, rank, engine.stats.as_dict())
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


def entry(
    item: Item, outcome: Outcome | None = None, completions: list | None = None
) -> journal.Entry:
    """The journal entry of ``item``: its answer read from ``completions`` (``outcome``), or
    the reason it was not asked."""
    if outcome is None:
        return journal.Entry(
            item.row, item.aspect, item.id, item.fingerprint(), item.reason, item.truncated,
            list(item.shots),
        )  # fmt: skip
    value, why = None, ""
    if len(completions) == 1:  # one answer: its label's probability
        value, why = confidence(completions[0][0]) if outcome.valid else (None, "invalid")
    return journal.Entry(
        item.row, item.aspect, item.id, item.fingerprint(), item.reason, item.truncated,
        list(item.shots), outcome.pred, outcome.raw, outcome.valid, outcome.note,
        prompt_tokens=sum(c[0].prompt_tokens for c in completions),
        completion_tokens=sum(c[0].completion_tokens for c in completions),
        confidence=value,
        confidence_note=why,
    )  # fmt: skip


def check_resumed_rows(
    job: Job, done: dict[tuple[int, str], journal.Entry], rows: list[dict], output: Path
) -> None:
    """`UserError` when a journal entry's document id is not the table's at that row: the
    input was re-sorted or edited since the interrupted run, and its answers would land on
    other rows."""
    if not done or not job.columns.id:
        return
    from llmscisci_cfg.data.examples import cell_text

    for (index, aspect), before in sorted(done.items()):
        if index >= len(rows):
            continue
        now = cell_text(rows[index].get(job.columns.id))
        if before.id != now:
            raise UserError(
                f"--resume: row {index + 1} ({aspect}) of the interrupted run was id "
                f"{before.id!r}, the table's row {index + 1} is now id {now!r}: "
                f"{job.data.ref} changed since; start again with --overwrite (journal next "
                f"to {output})"
            )


def check_unchanged(
    job: Job, done: dict[tuple[int, str], journal.Entry], items: list[Item], output: Path
) -> None:
    """`UserError` when a finished section no longer asks what its journalled answer answers
    (`Item.fingerprint`): its text, gold label, judged answers or worked examples changed since
    the interrupted run (the same id, other content)."""
    changed = [
        (item, done[(item.row, item.aspect)])
        for item in items
        if (item.row, item.aspect) in done
        and done[(item.row, item.aspect)].input != item.fingerprint()
    ]
    if not changed:
        return
    shown = ", ".join(f"row {i.row + 1} ({i.aspect}, id {i.id!r})" for i, _ in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    old = any(not before.input for _, before in changed)
    why = (
        "the journal was written by an older llmscisci that did not record what it asked"
        if old
        else f"their text, gold label, judged answers or worked examples in {job.data.ref} "
        "changed since"
    )
    raise UserError(
        f"--resume: {len(changed)} finished section(s) no longer ask what the interrupted run "
        f"asked: {shown}{more}; {why}, and their answers would not be this table's: put the "
        f"table back as it was, or start again with --overwrite (journal next to {output})"
    )


def decide_compile(engine: Any, requests: list[Any]) -> None:
    """``compile: auto`` over the whole job, not per chunk: a long predict compiles once (a
    chunk alone never has enough decode steps to pay for it)."""
    if not getattr(engine, "may_compile", False) or engine.compiled or not requests:
        return
    from llmscisci_cfg.models.generate import worth_compiling

    batches = -(-len(requests) // engine.batch_size)
    engine.compiled = worth_compiling(batches * requests[0].sampling.max_new_tokens)
