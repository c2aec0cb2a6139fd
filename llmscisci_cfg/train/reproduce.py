"""``llmscisci reproduce RUN``: train again from ``recipe.resolved.yaml`` and diff ``metrics.jsonl``.

Wall-clock fields (``train_runtime``, ``*_per_second``, ``step_time``) are ignored; every
other value must be equal. CPU runs of the built-in tiny model are bitwise identical.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.runs.rundir import METRICS, RESOLVED, RunDir, read_metrics

WALL_CLOCK = re.compile(r"(^|[_/])(runtime|samples_per_second|steps_per_second|step_time)$")
MAX_SHOWN = 20


@dataclass
class Comparison:
    """The outcome: ``identical`` or the ``differences`` (one line each)."""

    original: Path
    rerun: Path | None
    rows: int
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences

    def as_text(self) -> str:
        if self.identical:
            return f"reproduced: {self.rows} metric rows identical ({self.original})"
        shown = self.differences[:MAX_SHOWN]
        more = len(self.differences) - len(shown)
        tail = [f"... and {more} more"] if more else []
        return "\n".join([f"NOT reproduced: {len(self.differences)} differences", *shown, *tail])


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not WALL_CLOCK.search(k)}


def compare_metrics(original: list[dict[str, Any]], rerun: list[dict[str, Any]]) -> list[str]:
    """One line per difference: a missing/extra row, or ``step N: key: a != b``."""
    diffs = []
    if len(original) != len(rerun):
        diffs.append(f"row count: {len(original)} != {len(rerun)}")
    for i, (a, b) in enumerate(zip(original, rerun, strict=False)):  # extra rows: counted above
        a, b = comparable(a), comparable(b)
        where = f"row {i + 1} (step {a.get('step')})"
        for key in sorted(set(a) | set(b)):
            if key not in b:
                diffs.append(f"{where}: {key}: only in the original ({a[key]!r})")
            elif key not in a:
                diffs.append(f"{where}: {key}: only in the re-run ({b[key]!r})")
            elif a[key] != b[key]:
                diffs.append(f"{where}: {key}: {a[key]!r} != {b[key]!r}")
    return diffs


def changed_inputs(run: RunDir) -> list[str]:
    """The inputs whose content differs from what the manifest recorded: data source, traces,
    task file and prompts, chat template, reward sources, a local parent model's weights (one
    line each, both digests)."""
    from llmscisci_cfg.runs.manifest import task_info, weights_sha256

    job = run.job()
    recorded = run.manifest
    now: dict[str, tuple[str | None, str | None]] = {}
    data = recorded.get("data") if isinstance(recorded.get("data"), dict) else {}
    files = job.inputs
    for key in dict.fromkeys([*files, *(k for k, v in data.items() if isinstance(v, dict))]):
        file = files.get(key)
        entry = data.get(key) if isinstance(data.get(key), dict) else None
        if entry is not None or file is not None:
            current = file.sha256 if file is not None and file.path is not None else None
            now[f"data {key} ({file.ref if file else 'none'})"] = (
                (entry or {}).get("sha256"),
                current,
            )
    template = recorded.get("template") if isinstance(recorded.get("template"), dict) else {}
    if job.template.sha256 is not None:  # a tokenizer's own template is known once it loads
        now[f"chat template ({job.template.name})"] = (template.get("sha256"), job.template.sha256)
    task = recorded.get("task") if isinstance(recorded.get("task"), dict) else {}
    if task:
        current = task_info(job)
        for key, what in (
            ("sha256", f"task file ({current['file']})"),
            ("system_prompt_sha256", "system prompt"),
            ("user_prompt_sha256", "user prompt"),
        ):
            now[what] = (task.get(key), current[key])
    parent = recorded.get("parent_model") if isinstance(recorded.get("parent_model"), dict) else {}
    weights = parent.get("weights_sha256")
    if isinstance(weights, dict) and job.model.local_dir is not None:
        found = weights_sha256(job.model.local_dir)
        for name, sha in weights.items():
            now[f"base model weights {job.model.local_dir / name}"] = (sha, found.get(name))
    rewards = recorded.get("rewards") if isinstance(recorded.get("rewards"), list) else []
    for entry, source in zip(rewards, job.rewards, strict=False):
        if isinstance(entry, dict) and entry.get("sha256") is not None:
            now[f"reward {source.spec.label} ({source.file})"] = (entry["sha256"], source.sha256)
    return [
        f"input changed: {what}: sha256 {before} in the run, {after} now"
        for what, (before, after) in now.items()
        if before is not None and before != after
    ]


def reproduce_run(run_dir: str | Path, keep: bool = False, echo=print) -> Comparison:
    """Re-run ``run_dir``'s resolved recipe in a temporary directory and compare the metrics.

    First the inputs' digests are compared with the manifest's: when the data, traces, task
    file or prompts, chat template, a reward's code or a local base model's weights changed,
    the differences say which, and nothing is trained.
    """
    from llmscisci_cfg.train.runner import run

    opened = RunDir.open(run_dir)
    run_dir = opened.path
    if not (run_dir / METRICS).is_file():
        raise UserError(f"{run_dir}: not a finished run directory (no {METRICS})")
    status = opened.status
    if status != "completed":
        raise UserError(
            f"{run_dir}: the run did not complete (status: {status}); finish it with "
            "`llmscisci run ... --resume` before reproducing it"
        )
    original = read_metrics(run_dir)
    if not original:
        raise UserError(f"{run_dir}/{METRICS} is empty; nothing to compare")
    changed = changed_inputs(opened)
    if changed:  # the same recipe on other inputs is not a reproduction: say which, do not train
        return Comparison(run_dir, None, len(original), changed)
    scratch = Path(tempfile.mkdtemp(prefix="llmscisci-reproduce-"))
    rerun_dir = scratch / run_dir.name
    echo(f"re-running {run_dir / RESOLVED} into {rerun_dir}")
    try:
        run(str(run_dir / RESOLVED), (), rerun_dir, echo=echo)
        result = Comparison(run_dir, rerun_dir if keep else None, len(original))
        result.differences = compare_metrics(original, read_metrics(rerun_dir))
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return result
