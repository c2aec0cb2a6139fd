"""``manifest.json``: what a run was, so another researcher can trust and reproduce it.

Written atomically at the start (``status: running``) and again at the end
(``completed`` or ``failed``). It records the recipe (sha256 and resolved form), library
versions, this tool's version and source commit (`tool_info`), the git commit of the
recipe's repository, sha256 of the data source, the task file and its prompts as used, the
chat template and reward sources, the parent model (hub id + revision, or its weights'
sha256 and the run that made it: `parent_model`), seed, device, processes, times, what
``final/`` holds, and the inventory of what the run wrote (`rundir.run_inventory`).
Data and template hashes come from the `Job` (computed once per run); `RunDir` reads the
file back.
"""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from llmscisci_cfg import resources
from llmscisci_cfg.digest import content_sha256, text_sha256
from llmscisci_cfg.recipe.resolve import Job, absolute_recipe
from llmscisci_cfg.runs.rundir import (
    FINAL,
    INVENTORY,
    MANIFEST,
    RESOLVED,
    RUN_FORMAT,
    FinalInfo,
    RunDir,
    inventory,
    is_run_dir,
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


def _git(directory: Path, *args: str) -> str | None:
    """``git -C directory ARGS`` stdout, or None when git is missing or says no."""
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(directory: Path) -> dict[str, Any] | None:
    """Commit and dirtiness of the git repository holding ``directory``, or None."""
    sha = _git(directory, "rev-parse", "HEAD")
    if not sha:
        return None
    return {
        "sha": sha,
        "dirty": bool(_git(directory, "status", "--porcelain")),
        "root": _git(directory, "rev-parse", "--show-toplevel"),
    }


#: Written into a built (non-editable) package by ``setup.py``: the commit it was built from.
BUILD_COMMIT = "_build_commit.json"
#: The installed package's folder (this file is ``llmscisci_cfg/runs/manifest.py``).
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@functools.cache
def tool_info() -> dict[str, Any]:
    """This tool's version and the source commit of the installed package (computed once per
    process, when a manifest is written: never at import)."""
    try:
        version = metadata.version("llmscisci_cfg")
    except metadata.PackageNotFoundError:
        version = "unknown: llmscisci_cfg is not installed (run from a source folder)"
    return {"name": "llmscisci_cfg", "version": version} | source_commit(PACKAGE_DIR)


def source_commit(package_dir: Path) -> dict[str, Any]:
    """Where the code in ``package_dir`` comes from: the commit ``setup.py`` embedded when the
    package was built, else the git checkout the package is tracked in (an editable install),
    else ``"unknown"`` with the reason. ``dirty``: uncommitted changes at build or now."""
    embedded = package_dir / BUILD_COMMIT
    if embedded.is_file():
        try:
            data = json.loads(embedded.read_text(encoding="utf-8"))
            return {
                "commit": str(data["commit"]),
                "dirty": bool(data.get("dirty")),
                "commit_from": "embedded at build time",
            }
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if _git(package_dir, "ls-files", "--error-unmatch", "__init__.py") is not None:
        git = git_info(package_dir)
        if git is not None:
            return {
                "commit": git["sha"],
                "dirty": git["dirty"],
                "commit_from": f"git checkout {git['root']}",
            }
    return {
        "commit": "unknown",
        "dirty": None,
        "commit_from": f"unknown: {package_dir} is not tracked in a git checkout and its build "
        "embedded no commit (installed from an sdist or a copy?)",
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
    """Each data file read (the source or the split files, the labels table, the traces),
    by role: reference, resolved file and content sha256."""
    return {
        key: {"path": file.ref, "file": str(file.require()), "sha256": file.sha256}
        for key, file in job.inputs.items()
    }


def template_info(job: Job, text: str) -> dict[str, Any]:
    """The chat template trained with (``text``: the tokenizer's, which a ``tokenizer``
    template only knows once loaded)."""
    t = job.recipe.template
    return {"name": t.name, "file": t.file, "sha256": text_sha256(text)}


def task_info(job: Job) -> dict[str, Any]:
    """The task file (reference, resolved file, sha256) and the sha256 of the system and user
    prompt templates as trained with, after ``data.task_overrides``."""
    ref = job.recipe.data.task
    file = resources.task_file(ref, job.source_dir)
    overrides = job.recipe.data.task_overrides
    return {
        "ref": ref,
        "file": str(file),
        "sha256": content_sha256(file),
        "overrides": sorted(overrides.model_dump(exclude_none=True)) if overrides else [],
        "system_prompt_sha256": text_sha256(job.task.system_prompt),
        "user_prompt_sha256": text_sha256(job.task.user_prompt),
    }


def weights_sha256(folder: Path) -> dict[str, str]:
    """``sha256sum`` of each weight file in a model folder (``model.safetensors``,
    ``adapter_model.safetensors``, shards, ``pytorch_model*.bin``), by file name."""
    return {
        p.name: content_sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file()
        and (
            p.suffix == ".safetensors"
            or (p.suffix == ".bin" and p.name.startswith(("pytorch_model", "adapter_model")))
        )
    }


def parent_model(job: Job) -> dict[str, Any]:
    """The model training started from, so that another researcher gets the same weights: a
    built-in (name + seed), a hub model (id, the revision asked for and the commit it
    resolved to in the local hub cache, `hub_commit`), or a local folder by its weights'
    sha256; an earlier run's ``final/`` also names that run (manifest, recipe sha256) and
    the root of the chain."""
    ref = job.model
    info: dict[str, Any] = {"name_or_path": ref.name}
    if ref.builtin:
        return info | {"kind": "builtin", "id": ref.name, "seed": job.recipe.train.seed}
    if ref.local_dir is None:
        return info | {
            "kind": "hub",
            "id": ref.name,
            "revision": ref.revision or "main",
            "commit": hub_commit(ref.name, ref.revision),
        }
    folder = ref.local_dir
    info |= {"kind": "local", "path": str(folder), "weights_sha256": weights_sha256(folder)}
    run = folder.parent
    if folder.name == FINAL and is_run_dir(run):
        before = RunDir.open(run).manifest
        recipe = before.get("recipe") if isinstance(before.get("recipe"), dict) else {}
        grand = before.get("parent_model")
        info |= {
            "kind": "run",
            "run": {
                "dir": str(run),
                "manifest": str(run / MANIFEST),
                "recipe_sha256": recipe.get("sha256"),
                "resolved_sha256": recipe.get("resolved_sha256"),
            },
            "root": _root(grand) if isinstance(grand, dict) else None,
        }
    return info


def hub_commit(repo_id: str, revision: str | None) -> str:
    """The commit ``revision`` (default branch when None) of a hub model resolves to in the
    local hub cache, which the model was just loaded from (no network); ``"unknown"`` when
    the cache does not say."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # a malformed id or cache: the commit is unknown, not a failed run
        return "unknown"
    return Path(found).parent.name if isinstance(found, str) else "unknown"


def _root(parent: dict[str, Any]) -> dict[str, Any] | None:
    """The hub or built-in model at the start of a chain of runs (None when a local folder)."""
    if parent.get("kind") in ("hub", "builtin"):
        keys = ("kind", "id", "revision", "commit", "seed")
        return {k: parent[k] for k in keys if k in parent}
    root = parent.get("root")
    return root if isinstance(root, dict) else None


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
    """Write ``recipe.resolved.yaml`` and the first ``manifest.json``; return the manifest
    (once the model has loaded: a hub model's commit is read from the cache it came from).

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
        "tool": tool_info(),
        "git": _recipe_git(source),
        "data": data_info(job),
        "task": task_info(job),
        "template": template_info(job, template_text),
        "parent_model": parent_model(job),
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


def _recipe_git(source: Path | None) -> dict[str, Any]:
    """The git commit of the recipe's repository, or why there is none."""
    found = git_info(source.parent) if source else None
    if found is not None:
        return found
    why = f"{source} is not in a git repository" if source else "the recipe has no file"
    return {"sha": None, "note": why}


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
