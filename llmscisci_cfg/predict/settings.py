"""What shapes an answer: the settings a journal starts with and a report records.

A resumed prediction must have the same settings as the run it continues (its answers and the
earlier ones end up in one table); `check_journals` refuses one that has others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import journal
from llmscisci_cfg.recipe.resolve import Job


def sampling(job: Job):
    """The recipe's resolved sampling, with the log-probabilities confidence is read from."""
    from dataclasses import replace

    gen = job.generation
    return replace(gen.sampling, logprobs=gen.logprobs and job.task.kind == "label")


def settings(job: Job) -> dict[str, Any]:
    """Everything that shapes an answer; a resumed prediction must have the same (its answers
    and the earlier ones end up in one table), and report.json records it. The table itself
    may grow between an interruption and ``--resume`` (`share.check_unchanged` checks that the
    finished rows still ask the same); a finished output is compared with it and with the
    table's sha256 (`output.finished`). The task is taken whole (categories, codes, fields,
    constraints), the few-shot pool by its sha256."""
    from llmscisci_cfg.digest import text_sha256

    task, g, method, cols = job.task, job.recipe.generation, job.recipe.method, job.columns
    fields = {
        "generation": job.generation.describe(),
        "task": f"{task.name} ({task.kind})",
        "task_sha256": text_sha256(json.dumps(task.model_dump(mode="json"), sort_keys=True)),
        "aspects": list(job.aspects),
        "prompt_template_sha256": text_sha256(task.system_prompt + "\0" + task.user_prompt),
        "columns": {"id": cols.id, "text": cols.text, "label": cols.label},
        "label_codec": job.recipe.data.label_codec,
        "backend": g.backend,
        "model": (g.model or job.model.name) if g.backend == "openai" else job.model.name,
        "base_url": g.base_url if g.backend == "openai" else None,
        "sampling": vars(sampling(job)) | {"structured": g.structured},
        "shots": [method.shots, method.selection, *_pool(job)],
        "answers": method.answers,
        "max_prompt_tokens": method.max_prompt_tokens,
        "truncate": method.truncate,
        "output_prefix": method.output_prefix,
        "rows": _rows(job),
        "clean": None if job.recipe.data.clean is None else job.recipe.data.clean.model_dump(),
    }
    return json.loads(json.dumps(fields))  # as read back from a journal or report


def _rows(job: Job) -> list[str | None]:
    """``method.rows``, and with ``labelled`` the sha256 of a joined labels table: which rows
    are predicted (and where each sits in the journal) depends on it."""
    labels = job.labels
    joined = job.recipe.method.rows == "labelled" and labels is not None
    return [job.recipe.method.rows, labels.sha256 if joined else None]


def _pool(job: Job) -> list[str | None]:
    """``method.pool`` and its sha256 (its examples are shown), or None twice."""
    method = job.recipe.method
    if not method.pool or not method.shots:
        return [str(method.pool) if method.pool else None, None]
    from llmscisci_cfg.digest import content_sha256

    return [str(method.pool), content_sha256(job.path(method.pool))]


def differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = [k for k in now if before.get(k) != now[k]]
    return ", ".join(f"{k}: {before.get(k)!r} then, {now[k]!r} now" for k in keys)


def check_journals(job: Job, output: Path) -> None:
    """`UserError` when a journal was written with other settings than this run's, or when
    its first line does not say which (damaged or edited: its answers cannot be checked)."""
    now = settings(job)
    for path, before in journal.read_settings(output):
        if before is None:
            raise UserError(
                f"--resume: {path}: its first line is not the settings its answers were "
                "generated with (the journal is damaged or was edited), so they cannot be "
                "checked against this run's and might be mixed with them in one table: start "
                "again with --overwrite"
            )
        if before != now:
            raise UserError(
                f"--resume: {path.name} was written with other settings "
                f"({differences(before, now)}); its answers and this run's would be mixed in "
                "one table: resume with the same "
                "recipe and --set values, or start again with --overwrite"
            )
