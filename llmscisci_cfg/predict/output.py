"""Where a prediction is written and when it may be: the output & resume policy.

An output is never replaced without ``--overwrite``, an interrupted one's journal never
ignored without ``--resume`` or ``--overwrite``; ``--resume`` of a finished output returns it
as it is, or refuses when resuming would change or shrink it.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import journal
from llmscisci_cfg.predict.options import PredictOptions, PredictResult
from llmscisci_cfg.predict.settings import differences, settings
from llmscisci_cfg.recipe.resolve import Job


def default_output(job: Job) -> Path:
    suffix = ".traces.jsonl" if job.task.kind == "rationale" else ".jsonl"
    return Path("predictions") / f"{job.name}{suffix}"


def report_path(output: Path) -> Path:
    return output.with_name(output.name + ".report.json")


def check_output(job: Job, output: Path) -> None:
    from llmscisci_cfg.data.table import table_format

    if job.task.kind == "rationale" and not output.name.endswith(".jsonl"):
        raise UserError(
            f"--output {output}: rationales are written as traces JSONL; end it in .jsonl"
        )
    table_format(output)  # a UserError for an unknown extension
    inputs = {"data.source.path": job.data.require()}
    if job.recipe.method.pool:
        inputs["method.pool"] = job.path(job.recipe.method.pool)
    for key, source in inputs.items():
        what = _written_as(output, source)
        if what:
            raise UserError(
                f"--output {output}: {what} would replace the input table {source} ({key}); "
                "predictions never overwrite their input: choose another --output"
            )


def _written_as(output: Path, source: Path) -> str:
    """Which file of a prediction into ``output`` would be ``source`` ("" for none): the
    output itself, its report, a journal or a process's figures."""
    try:
        if output.exists() and output.samefile(source):  # a case-insensitive disk, a link
            return "the output"
    except OSError:
        pass
    if not _same_folder(output.parent, source.parent):
        return ""
    name, mine = source.name, output.name
    if name == mine:
        return "the output"
    if name == mine + ".report.json":
        return f"its report {name}"
    if name.startswith(mine + journal.SUFFIX) and name.endswith(".jsonl"):
        return f"its journal {name}"
    if name.startswith(mine + ".stats.rank") and name.endswith(".json"):
        return f"its figures {name}"
    return ""


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.is_dir() and b.is_dir() and a.samefile(b))
    except OSError:
        return False


def prepare(output: Path, opts: PredictOptions) -> None:
    """Refuse to replace a finished output or an interrupted one's journal without being told."""
    from llmscisci_cfg.predict.report import remove_stats

    if opts.resume and opts.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"--output {output}: cannot create its folder: {exc.strerror or exc}"
        ) from None
    partial = journal.paths(output)
    if opts.overwrite:
        journal.remove(output)
        remove_stats(output)  # a crashed sharded run's per-rank figures would be summed in
        return
    if partial and not opts.resume:
        raise UserError(
            f"{output}: an earlier prediction (interrupted, or with --limit) left "
            f"{partial[0].name}; pass --resume to continue it (finished rows are not asked "
            "again) or --overwrite to start over"
        )
    if output.exists() and not opts.resume:
        raise UserError(
            f"{output}: exists; pass --overwrite to replace it or choose another --output"
        )
    output.parent.mkdir(parents=True, exist_ok=True)


def finished(job: Job, output: Path, opts: PredictOptions, rows: list) -> PredictResult | None:
    """``--resume`` of a prediction that finished (its output and report there, no journal):
    the result as it is, or a `UserError` when resuming would change or shrink it."""
    if not opts.resume or journal.paths(output) or not output.exists():
        return None
    path = report_path(output)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no readable report: predicted again
    if not isinstance(report, dict) or not isinstance(report.get("settings"), dict):
        raise UserError(
            f"--resume: {output} is finished, but its report does not record the settings it "
            "was predicted with (an older llmscisci): use it as it is, or predict it again "
            "with --overwrite"
        )
    now = settings(job)
    if report["settings"] != now:
        raise UserError(
            f"--resume: {output} was predicted with other settings "
            f"({differences(report['settings'], now)}); pass --overwrite to predict it again"
        )
    source = report.get("source")
    before = source.get("sha256") if isinstance(source, dict) else None
    if before != job.data.sha256:
        raise UserError(
            f"--resume: {output} was predicted from another version of {job.data.ref} "
            f"(sha256 {before}, now {job.data.sha256}); pass --overwrite to predict it again"
        )
    if report.get("rows") == len(rows):
        return PredictResult(output, path, report)
    if isinstance(report.get("rows"), int) and report["rows"] > len(rows):
        raise UserError(
            f"--resume: {output} holds {report['rows']} rows; --limit {opts.limit} would replace "
            "it with fewer: give a larger --limit, another --output, or --overwrite"
        )
    return None
