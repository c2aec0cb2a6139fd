"""The end of a prediction: the journals merged into the output (every input row in input
order plus the prediction's columns, or a rationale task's traces) and the report."""

from __future__ import annotations

from pathlib import Path

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import journal
from llmscisci_cfg.predict.options import PredictOptions, PredictResult
from llmscisci_cfg.predict.output import report_path
from llmscisci_cfg.predict.report import build_report, remove_stats, summary
from llmscisci_cfg.predict.table import output_columns
from llmscisci_cfg.recipe.resolve import Job


def finish(job: Job, table, rows: list, output: Path, opts: PredictOptions, echo) -> PredictResult:
    """Merge the journals into the output (input order) and the report; remove the journals,
    unless ``--limit`` left rows of the table unpredicted (a later ``--resume`` uses them)."""
    from llmscisci_cfg.data.table import write_table

    done = journal.read(output)
    missing = [(i, a) for i in range(len(rows)) for a in job.aspects if (i, a) not in done]
    if missing:
        raise UserError(
            f"{output}: {len(missing)} sections were not predicted; rerun with --resume"
        )
    if job.task.kind == "rationale":
        traces = [
            {"id": done[(i, a)]["id"], "aspect": a, "trace": done[(i, a)]["pred"]}
            for i in range(len(rows))
            for a in job.aspects
            if done[(i, a)]["valid"]
        ]
        write_table(output, traces, ["id", "aspect", "trace"])
    else:
        merged, prefix = [], job.recipe.method.output_prefix
        for i, row in enumerate(rows):
            out = dict(row)
            for aspect in job.aspects:
                entry, name = done[(i, aspect)], f"{prefix}{aspect}"
                out |= {
                    f"{name}_pred": entry["pred"],
                    f"{name}_raw": entry["raw"],
                    f"{name}_reason": entry["reason"]
                    or ("" if entry["valid"] else "invalid_answer"),
                    f"{name}_truncated": entry["truncated"],
                }
                if job.task.kind == "label":
                    out[f"{name}_confidence"] = entry.get("confidence")
                if job.recipe.method.shots:
                    out[f"{name}_shots"] = entry["shots"]
            merged.append(out)
        write_table(output, merged, list(table.columns) + output_columns(job))
    report = build_report(job, output, rows, done)
    path = report_path(output)
    from llmscisci_cfg.runs.rundir import write_json

    write_json(path, report)
    if len(rows) < len(table.rows):  # what --limit left out may follow with --resume
        echo(
            f"--limit {opts.limit} of {len(table.rows)} rows: the journal stays beside "
            f"{output.name} for a later --resume (answers already paid for are not asked again)"
        )
    else:
        journal.remove(output)
    remove_stats(output)
    echo(summary(report))
    return PredictResult(output, path, report)
