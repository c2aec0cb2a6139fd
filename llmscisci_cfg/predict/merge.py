"""The end of a prediction: the journals merged into the output (every input row in input
order plus the prediction's columns, or a rationale task's traces) and the report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import journal
from llmscisci_cfg.predict.journal import Entry
from llmscisci_cfg.predict.options import PredictOptions, PredictResult
from llmscisci_cfg.predict.output import report_path
from llmscisci_cfg.predict.report import build_report, remove_stats, summary
from llmscisci_cfg.predict.table import Inputs, output_columns
from llmscisci_cfg.recipe.resolve import Job


def finish(
    job: Job, inputs: Inputs, output: Path, opts: PredictOptions, echo: Callable[[str], None]
) -> PredictResult:
    """Merge the journals into the output (input order) and the report; remove the journals,
    unless ``--limit`` left rows of the table unpredicted (a later ``--resume`` uses them)."""
    from llmscisci_cfg.data.table import write_table

    table, rows = inputs.table, inputs.rows
    done = journal.read(output)
    missing = [(i, a) for i in range(len(rows)) for a in job.aspects if (i, a) not in done]
    if missing:
        raise UserError(
            f"{output}: {len(missing)} sections were not predicted; rerun with --resume"
        )
    check_usable(job, [done[(i, a)] for i in range(len(rows)) for a in job.aspects], output)
    if job.task.kind == "rationale":
        traces = [
            {"id": done[(i, a)].id, "aspect": a, "trace": done[(i, a)].pred}
            for i in range(len(rows))
            for a in job.aspects
            if done[(i, a)].valid
        ]
        write_table(output, traces, ["id", "aspect", "trace"])
    else:
        merged, prefix = [], job.recipe.method.output_prefix
        for i, row in enumerate(rows):
            out = dict(row)
            for aspect in job.aspects:
                entry, name = done[(i, aspect)], f"{prefix}{aspect}"
                out |= {
                    f"{name}_pred": entry.pred,
                    f"{name}_raw": entry.raw,
                    f"{name}_reason": entry.reason or ("" if entry.valid else "invalid_answer"),
                    f"{name}_truncated": entry.truncated,
                }
                if job.task.kind == "label":
                    out[f"{name}_confidence"] = entry.confidence
                if job.recipe.method.shots:
                    out[f"{name}_shots"] = entry.shots
            merged.append(out)
        write_table(output, merged, list(table.columns) + output_columns(job))
    report = build_report(job, output, rows, done, inputs.unlabelled)
    path = report_path(output)
    from llmscisci_cfg.runs.rundir import write_json

    write_json(path, report)
    if inputs.limited:  # what --limit left out may follow with --resume
        echo(
            f"--limit {opts.limit} of {len(table.rows)} rows: the journal stays beside "
            f"{output.name} for a later --resume (answers already paid for are not asked again)"
        )
    else:
        journal.remove(output)
    remove_stats(output)
    echo(summary(report))
    return PredictResult(output, path, report)


#: What a rationale's drop notes mean, for the message of `check_usable`.
DROPPED = {
    "disagrees_with_gold": "the teacher's label differs from the gold one",
    "invalid": "no readable label in the answer",
}


def check_usable(job: Job, entries: list[Entry], output: Path) -> None:
    """`UserError` when not one section has a valid answer (for rationales: not one trace is
    kept): nothing is written, so the next stage never reads an empty output; the reasons are
    counted and the journal, with every raw answer, stays for a look."""
    if any(e.valid for e in entries):
        return
    asked = [e for e in entries if not e.reason]
    why = Counter(e.reason for e in entries if e.reason)
    if job.task.kind == "rationale":
        why |= Counter(DROPPED.get(e.note, e.note or "invalid") for e in asked)
        what, hint = (
            "a trace",
            "a trace is kept only when the label the teacher repeats equals the gold one: check "
            "data.columns.label and data.label_codec, or use a stronger teacher model",
        )
    else:
        why["invalid answer (unreadable or outside the task's answer format)"] += len(asked)
        what, hint = (
            "an answer",
            "check generation.structured (off, a model may answer anything) and "
            "generation.max_new_tokens (an answer cut short does not parse)",
        )
    reasons = ", ".join(f"{n} {r}" for r, n in why.most_common())
    kept = journal.paths(output)
    where = f"; the raw answers stay in {kept[0]}" if kept and asked else ""
    raise UserError(
        f"{output}: nothing usable, so nothing written: 0 of {len(entries)} sections gave "
        f"{what} ({reasons}); {hint}{where} (--overwrite starts again)"
    )
