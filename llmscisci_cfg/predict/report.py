"""``OUTPUT.report.json``: what was predicted, skipped, truncated and valid, per aspect; the
model, the prompts' sha256, the resolved generation spec with the chat template actually used,
tokens and speed (from each process's ``OUTPUT.stats.rankN.json``); and its one-line summary."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from llmscisci_cfg.predict.journal import Entry
from llmscisci_cfg.predict.sections import open_tokenizer
from llmscisci_cfg.predict.settings import sampling, settings
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.task.labels import LabelError


def build_report(
    job: Job, output: Path, rows: list, done: dict[tuple[int, str], Entry], unlabelled: int = 0
) -> dict[str, Any]:
    """``OUTPUT.report.json``: what was predicted, skipped, truncated, valid; the model, the
    prompt templates' sha256, sampling, tokens and seconds. ``unlabelled``: the table's rows
    ``method.rows: labelled`` left out."""
    from llmscisci_cfg.digest import text_sha256

    task, g = job.task, job.recipe.generation
    entries = [done[(i, a)] for i in range(len(rows)) for a in job.aspects]
    skipped = Counter(e.reason for e in entries if e.reason)
    per_aspect: dict[str, Any] = {}
    for aspect in job.aspects:
        mine = [e for e in entries if e.aspect == aspect and not e.reason]
        valid = [e for e in mine if e.valid]
        part: dict[str, Any] = {
            "sections": len(mine),
            "valid": len(valid),
            "valid_rate": round(len(valid) / len(mine), 4) if mine else None,
            "truncated": sum(e.truncated for e in mine),
        }
        if task.kind == "label":
            kind = task.label_kind(aspect)
            counts = Counter()
            for e in valid:
                try:
                    counts.update(kind.counts(kind.decode_gold(e.pred)))
                except LabelError:  # an edited journal: counted nowhere
                    pass
            part["frequencies"] = {n: counts[n] for n in kind.categories}
            part["confidence"] = _confidence_summary(mine)
        elif task.kind == "judge":
            part["verdicts"] = dict(Counter(str(e.pred) for e in valid))
            part["inconsistent_pairs"] = sum(e.note == "inconsistent" for e in mine)
        elif task.kind == "rationale":
            part["dropped"] = dict(Counter(e.note for e in mine if not e.valid))
        per_aspect[aspect] = part
    figures = stats(output)
    predicted = [e for e in entries if not e.reason]
    report: dict[str, Any] = {
        "task": {"name": task.name, "kind": task.kind},
        "source": {"file": str(job.data.require()), "sha256": job.data.sha256},
        "labels": {"file": str(job.labels.require()), "sha256": job.labels.sha256}
        if job.labels is not None
        else None,
        "output": str(output),
        "rows": len(rows),
        "row_selection": {"rows": job.recipe.method.rows, "unlabelled_left_out": unlabelled},
        "sections": len(entries),
        "predicted": len(predicted),
        "skipped": dict(skipped),
        "truncated": sum(e.truncated for e in predicted),
        "valid_rate": round(sum(e.valid for e in predicted) / len(predicted), 4)
        if predicted
        else None,
        "aspects": per_aspect,
        "backend": g.backend,
        "model": (g.model or job.model.name) if g.backend == "openai" else job.model.name,
        # a builtin model is random weights from a seed: which ones (a server says its own)
        "model_seed": job.model.seed if job.model.builtin and g.backend != "openai" else None,
        "base_url": g.base_url if g.backend == "openai" else None,
        "prompt_template_sha256": text_sha256(task.system_prompt + "\0" + task.user_prompt),
        "clean": None if job.recipe.data.clean is None else job.recipe.data.clean.model_dump(),
        "sampling": vars(sampling(job)) | {"structured": g.structured},
        "shots": {"k": job.recipe.method.shots, "selection": job.recipe.method.selection}
        if job.recipe.method.shots
        else None,
        "tokens": {
            "prompt": sum(e.prompt_tokens for e in entries),
            "completion": sum(e.completion_tokens for e in entries),
        },
        "seconds": figures.get("seconds"),
        "tokens_per_second": figures.get("tokens_per_second"),
        "generation": job.generation.describe(open_tokenizer(job, "cpu").template),
        "settings": settings(job),
    }
    if task.kind == "extract":
        report["schema_valid_rate"] = report["valid_rate"]
    report["sampling"]["stop"] = list(report["sampling"]["stop"])
    return report


def _confidence_summary(entries: list[Entry]) -> dict[str, Any]:
    """How many answers have a confidence, their mean, and why the others have none."""
    values = [e.confidence for e in entries if e.confidence is not None]
    missing = Counter(e.confidence_note or "not recorded" for e in entries if e.confidence is None)
    return {
        "rows": len(values),
        "mean": round(sum(values) / len(values), 4) if values else None,
        "missing": dict(missing),
    }


def _stats_paths(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{output.name}.stats.rank*.json"))


def write_stats(output: Path, rank: int, figures: dict[str, Any]) -> None:
    """This process's seconds and tokens (`GenerationStats.as_dict`), beside the output."""
    from llmscisci_cfg.runs.rundir import write_json

    write_json(output.with_name(f"{output.name}.stats.rank{rank}.json"), figures)


def remove_stats(output: Path) -> None:
    for path in _stats_paths(output):
        path.unlink(missing_ok=True)


def stats(output: Path) -> dict[str, Any]:
    """Seconds (the slowest process) and tokens per second (all of them); a figures file that
    cannot be read (a crash while writing it) counts for nothing."""
    seconds = completion = 0.0
    for path in _stats_paths(output):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        figures = data if isinstance(data, dict) else {}
        seconds = max(seconds, _number(figures.get("seconds")))
        completion += _number(figures.get("completion_tokens"))
    return {
        "seconds": round(seconds, 2),
        "tokens_per_second": round(completion / seconds, 1) if seconds else None,
    }


def _number(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) and value >= 0 else 0.0


def summary(report: dict[str, Any]) -> str:
    skipped = ", ".join(f"{n} {r}" for r, n in report["skipped"].items()) or "none"
    valid = report["valid_rate"]
    return (
        f"{report['rows']} rows, {report['predicted']} sections predicted "
        f"({'–' if valid is None else f'{valid:.0%}'} valid, {report['truncated']} truncated), "
        f"skipped: {skipped}\nwrote {report['output']}"
    )
