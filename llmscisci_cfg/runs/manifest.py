"""``manifest.json``: what a run was, so another researcher can trust and reproduce it.

Written atomically at the start (``status: running``) and again at the end
(``completed`` or ``failed``). It records the recipe (sha256 and resolved form), library
versions, the git commit of the recipe's repository, sha256 of the data source, chat
template and reward sources, seed, device, processes, times, and what ``final/`` holds.
"""

from __future__ import annotations

import hashlib
import inspect
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.resources import BUILTIN
from llmscisci_cfg.runs.rundir import MANIFEST, RESOLVED, write_atomic, write_json

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


@dataclass(frozen=True)
class FinalInfo:
    """What ``final/`` holds: a LoRA ``adapter`` over ``base_model``, or a ``full`` model."""

    kind: str
    base_model: str
    base_seed: int | None  # builtin:tiny weights are rebuilt from this seed
    chat_template: str = "final/chat_template.jinja"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str | None:
    """``sha256sum`` of a file (a directory: `sources.content_sha256`); None when absent."""
    from llmscisci_cfg.data.sources import content_sha256

    path = Path(path)
    return content_sha256(path) if path.exists() else None


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


def absolute_recipe(recipe: Recipe) -> Recipe:
    """A copy whose recipe-relative paths are absolute, so it loads from any directory."""
    r = recipe.model_copy(deep=True)
    d = r.data

    def fix(path: str | None) -> str | None:
        if path is None or path.startswith(BUILTIN):
            return path
        return str(recipe.resolve(path))

    d.source.path = fix(d.source.path)
    d.task = fix(d.task)
    if d.traces is not None:
        d.traces.path = fix(d.traces.path)
    if d.cache_dir is not None:
        d.cache_dir = fix(d.cache_dir)
    r.template.file = fix(r.template.file)
    r.launch.accelerate_config = fix(r.launch.accelerate_config)
    for spec in r.rewards or []:
        file, sep, func = spec.name.rpartition(":")
        if sep and file.endswith(".py"):
            spec.name = f"{fix(file)}:{func}"
    local = local_model_dir(recipe)
    if local is not None:
        r.model.name_or_path = str(local)
    r._source_path = recipe.source_path
    return r


def local_model_dir(recipe: Recipe) -> Path | None:
    """``model.name_or_path`` as a local directory (cwd first, then recipe-relative), or None."""
    name = recipe.model.name_or_path
    if name.startswith(BUILTIN):
        return None
    for candidate in (Path(name).expanduser(), recipe.resolve(name)):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def model_source(recipe: Recipe) -> str:
    """Where to load the model from: its local directory, else the name (a hub id or builtin).

    A path-like name (``./x``, ``/x``, ``~/x``, ``a/b/c``) that is not a directory is a
    `UserError` here, when a model is about to load: it cannot be a hub id (``org/name``).
    """
    local = local_model_dir(recipe)
    if local is not None:
        return str(local)
    name = recipe.model.name_or_path
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/"):
        raise UserError(
            f"model.name_or_path: no such directory: {name} (looked in {Path.cwd()} and "
            f"{recipe.source_dir})"
        )
    return name


def resolved_yaml(recipe: Recipe) -> str:
    """The recipe with every default filled and absolute paths, as YAML (what reproduce reloads)."""
    data = absolute_recipe(recipe).model_dump(mode="json")
    header = f"# Resolved from {recipe.source_path or '<code>'} by llmscisci; defaults filled in.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# ----------------------------------------------------------------------------- inputs


def data_source_info(recipe: Recipe) -> dict[str, Any]:
    """The data source (and traces file): reference, resolved file and content sha256."""
    from llmscisci_cfg.data.sources import data_path

    info: dict[str, Any] = {}
    refs = {"source": (recipe.data.source.path, "data.source.path")}
    if recipe.data.traces is not None:
        refs["traces"] = (recipe.data.traces.path, "data.traces.path")
    for key, (ref, where) in refs.items():
        file = data_path(recipe, ref, where)
        info[key] = {"path": ref, "file": str(file), "sha256": sha256_file(file)}
    return info


def template_info(recipe: Recipe) -> dict[str, Any]:
    from llmscisci_cfg.models.chat import template_text

    text = template_text(recipe)
    return {
        "name": recipe.template.name,
        "file": recipe.template.file,
        "sha256": sha256_bytes(text.encode()),
    }


def reward_info(recipe: Recipe, funcs: list[Any]) -> list[dict[str, Any]]:
    """Per reward: name, weight, the file its code lives in and that file's sha256."""
    out = []
    for spec, func in zip(recipe.rewards or [], funcs, strict=True):
        target = getattr(func, "func", func)  # functools.partial
        target = getattr(target, "__wrapped__", target)
        try:
            source = inspect.getsourcefile(target)
        except TypeError:
            source = None
        out.append(
            {
                "name": spec.name,
                "label": spec.label,
                "weight": spec.weight,
                "params": spec.params,
                "source": source,
                "sha256": sha256_file(Path(source)) if source else None,
            }
        )
    return out


# ----------------------------------------------------------------------------- writing


def start(
    run_dir: Path,
    recipe: Recipe,
    recipe_ref: str,
    overrides: tuple[str, ...],
    compiled: dict[str, Any],
    final: FinalInfo,
    resumed_from: str | None,
) -> dict[str, Any]:
    """Write ``recipe.resolved.yaml`` and the first ``manifest.json``; return the manifest."""
    history = _history(run_dir) if resumed_from else []
    text = resolved_yaml(recipe)
    write_atomic(run_dir / RESOLVED, text)
    source = recipe.source_path
    manifest: dict[str, Any] = {
        "status": "running",
        "command": command(recipe_ref, overrides, run_dir, resumed_from is not None),
        "recipe": {
            "ref": recipe_ref,
            "file": str(source) if source else None,
            "sha256": sha256_file(source) if source else None,
            "overrides": list(overrides),
            "resolved_sha256": sha256_bytes(text.encode()),
            "resolved": absolute_recipe(recipe).model_dump(mode="json"),
        },
        "versions": versions(),
        "git": git_info(source.parent) if source else None,
        "data": data_source_info(recipe),
        "template": template_info(recipe),
        "rewards": [],
        "seed": recipe.train.seed,
        "device": compiled["device"],
        "num_processes": recipe.launch.num_processes,
        "processes": [],
        "compiled": compiled,
        "final": final.__dict__,
        "resumed_from": resumed_from,
        "history": history,  # earlier sessions of a resumed run
        "start_time": now(),
        "end_time": None,
    }
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def _history(run_dir: Path) -> list[dict[str, Any]]:
    """The previous manifest's sessions plus the previous session itself."""
    if not (run_dir / MANIFEST).is_file():
        return []
    old = read(run_dir)
    keys = ("status", "start_time", "end_time", "resumed_from")
    return [*old.get("history", []), {k: old.get(k) for k in keys}]


def command(recipe_ref: str, overrides: tuple[str, ...], run_dir: Path, resume: bool) -> str:
    """The ``llmscisci run`` command line that makes (or continues) this run."""
    import shlex

    args = [
        "llmscisci",
        "run",
        recipe_ref,
        *[f"--set={o}" for o in overrides],
        "--output-dir",
        str(run_dir),
    ]
    return shlex.join(args + (["--resume"] if resume else []))


def update(run_dir: Path, manifest: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the manifest and rewrite it atomically."""
    manifest.update(fields)
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def read(run_dir: Path) -> dict[str, Any]:
    import json

    from llmscisci_cfg.errors import UserError

    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))
