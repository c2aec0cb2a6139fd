"""``manifest.json``: what a run was, so another researcher can trust and reproduce it.

Written atomically at the start (``status: running``) and again at the end
(``completed`` or ``failed``). It records the recipe (sha256 and resolved form), library
versions, the git commit of the recipe's repository, sha256 of the data source, chat
template and reward sources, seed, device, processes, times, what ``final/`` holds, and the
inventory of what the run wrote (`rundir.run_inventory`). Every hash comes from the `Job`
(computed once per run); `RunDir` reads the file back.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from llmscisci_cfg.digest import content_sha256, text_sha256
from llmscisci_cfg.recipe.resolve import Job, absolute_recipe
from llmscisci_cfg.runs.rundir import (
    INVENTORY,
    MANIFEST,
    RESOLVED,
    RUN_FORMAT,
    FinalInfo,
    RunDir,
    inventory,
    run_inventory,
    write_atomic,
    write_json,
)

PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "llmscisci_cfg",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    """Python and library versions (from package metadata, without importing them)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_info(directory: Path) -> dict[str, Any] | None:
    """Commit and dirtiness of the git repository holding ``directory``, or None."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    return {
        "sha": sha,
        "dirty": bool(git("status", "--porcelain")),
        "root": git("rev-parse", "--show-toplevel"),
    }


# ----------------------------------------------------------------------------- the recipe


def resolved_yaml(job: Job) -> str:
    """The recipe with every default filled and absolute paths, as YAML (what reproduce reloads)."""
    data = absolute_recipe(job.recipe).model_dump(mode="json")
    source = job.recipe_file or job.recipe.source_path or "<code>"
    header = f"# Resolved from {source} by llmscisci; defaults filled in.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def final_info(job: Job, lora: bool) -> FinalInfo:
    """What ``final/`` will hold, for `eval` and `export` to read back."""
    model = job.model
    return FinalInfo(
        kind="adapter" if lora else "full",
        base_model=str(model.local_dir) if model.local_dir else model.name,
        base_seed=job.recipe.train.seed if model.builtin else None,
    )


# ----------------------------------------------------------------------------- inputs


def data_info(job: Job) -> dict[str, Any]:
    """The data source (and traces file): reference, resolved file and content sha256."""
    info: dict[str, Any] = {}
    for key, file in (("source", job.data), ("traces", job.traces)):
        if file is not None:
            info[key] = {"path": file.ref, "file": str(file.require()), "sha256": file.sha256}
    return info


def template_info(job: Job, text: str) -> dict[str, Any]:
    """The chat template trained with (``text``: the tokenizer's, which a ``tokenizer``
    template only knows once loaded)."""
    t = job.recipe.template
    return {"name": t.name, "file": t.file, "sha256": text_sha256(text)}


def reward_info(job: Job) -> list[dict[str, Any]]:
    """Per reward: name, weight, the file its code lives in and that file's sha256."""
    return [
        {
            "name": r.spec.name,
            "label": r.spec.label,
            "weight": r.spec.weight,
            "params": r.spec.params,
            "source": str(r.file) if r.file else None,
            "sha256": r.sha256,
        }
        for r in job.rewards
    ]


# ----------------------------------------------------------------------------- writing


def start(
    job: Job,
    compiled: dict[str, Any],
    final: FinalInfo,
    template_text: str,
    resumed_from: str | None,
) -> dict[str, Any]:
    """Write ``recipe.resolved.yaml`` and the first ``manifest.json``; return the manifest.

    A resumed run keeps what eval and export added to the old manifest's inventory."""
    run_dir = job.run_dir
    before = (
        RunDir.open(run_dir).manifest if resumed_from and (run_dir / MANIFEST).is_file() else {}
    )
    history = _history(before) if resumed_from else []
    text = resolved_yaml(job)
    write_atomic(run_dir / RESOLVED, text)
    source = job.recipe_file
    manifest: dict[str, Any] = {
        "format": RUN_FORMAT,
        "status": "running",
        "command": job.command_text(run_dir, resume=resumed_from is not None),
        "recipe": {
            "ref": job.origin.ref,
            "file": str(source) if source else None,
            "sha256": content_sha256(source) if source else None,
            "overrides": list(job.origin.overrides),
            "resolved_sha256": text_sha256(text),
            "resolved": absolute_recipe(job.recipe).model_dump(mode="json"),
        },
        "versions": versions(),
        "git": git_info(source.parent) if source else None,
        "data": data_info(job),
        "template": template_info(job, template_text),
        "rewards": reward_info(job),
        "seed": job.recipe.train.seed,
        "device": compiled["device"],
        "num_processes": job.recipe.launch.num_processes,
        "processes": [],
        "compiled": compiled,
        "final": final.__dict__,
        "resumed_from": resumed_from,
        "history": history,  # earlier sessions of a resumed run
        "start_time": now(),
        "end_time": None,
        INVENTORY: run_inventory(inventory(before) or []),
    }
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def _history(old: dict[str, Any]) -> list[dict[str, Any]]:
    """The previous manifest's sessions plus the previous session itself."""
    if not old:
        return []
    keys = ("status", "start_time", "end_time", "resumed_from")
    history = old.get("history")
    return [*(history if isinstance(history, list) else []), {k: old.get(k) for k in keys}]


def update(run_dir: Path, manifest: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the manifest and rewrite it atomically."""
    manifest.update(fields)
    write_json(run_dir / MANIFEST, manifest)
    return manifest
