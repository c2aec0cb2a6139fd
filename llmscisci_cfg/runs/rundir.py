"""The run directory: its layout, the one reader of it (`RunDir`), whether we may write into
it, and atomic file writes.

Layout (rank 0 writes all of it)::

    runs/<name>/
      manifest.json          provenance; written atomically at start and at the end
      recipe.resolved.yaml   the recipe with defaults filled and paths made absolute
      metrics.jsonl          one JSON object per logged step
      accelerate_config.yaml only for multi-process runs
      checkpoints/           TRL checkpoints (+ llmscisci_state.json; resume reads the last one)
      final/                 adapter or full model + tokenizer with the training chat template
      plots/                 loss and reward curves (PNG)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.errors import UserError

if TYPE_CHECKING:
    from llmscisci_cfg.recipe.resolve import Job

MANIFEST = "manifest.json"
RESOLVED = "recipe.resolved.yaml"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FINAL = "final"
PLOTS = "plots"
ACCELERATE_CONFIG = "accelerate_config.yaml"

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class FinalInfo:
    """What ``final/`` holds: a LoRA ``adapter`` over ``base_model``, or a ``full`` model."""

    kind: str
    base_model: str
    base_seed: int | None  # builtin:tiny weights are rebuilt from this seed
    chat_template: str = "final/chat_template.jinja"


@dataclass(frozen=True)
class RunDir:
    """A run directory as every command reads it: its manifest, resolved recipe and ``final/``.

    `open` is the only reader of ``manifest.json``; eval, export, reproduce, resume and the
    model loader go through it, so a missing or broken run directory reads the same everywhere.
    """

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path, hint: str = "") -> RunDir:
        """Read ``path``'s manifest; a `UserError` says what is missing (``hint``: what else to do)."""
        path = Path(path)
        more = f"; {hint}" if hint else ""
        if not path.is_dir():
            raise UserError(
                f"{path}: no such directory; give a run directory made by `llmscisci run`{more}"
            )
        missing = [name for name in (RESOLVED, MANIFEST) if not (path / name).is_file()]
        if missing:
            raise UserError(
                f"{path}: not a run directory (no {' or '.join(missing)}); give the directory "
                f"that `llmscisci run` printed{more}"
            )
        return cls(path, read_manifest(path / MANIFEST))

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", "unknown"))

    @property
    def resolved(self) -> Path:
        return self.path / RESOLVED

    @property
    def final_dir(self) -> Path:
        return self.path / FINAL

    @property
    def has_final(self) -> bool:
        return self.final_dir.is_dir() and any(self.final_dir.iterdir())

    @property
    def final(self) -> FinalInfo:
        """What ``final/`` holds, from the manifest (or from the files when it does not say)."""
        info = self.manifest.get("final")
        info = info if isinstance(info, dict) else {}
        kind = info.get("kind") or (
            "adapter" if (self.final_dir / "adapter_config.json").is_file() else "full"
        )
        base = info.get("base_model")
        if not isinstance(base, str) or not base:
            raise UserError(f"{self.path / MANIFEST}: final.base_model is missing")
        seed = info.get("base_seed")
        return FinalInfo(kind=str(kind), base_model=base, base_seed=seed)

    @property
    def data_cache_key(self) -> str | None:
        """The dataset the run trained on (``data_report.cache_key``)."""
        report = self.manifest.get("data_report")
        return report.get("cache_key") if isinstance(report, dict) else None

    def require_final(self) -> Path:
        """``final/``, or a `UserError` saying how to get it."""
        if self.has_final:
            return self.final_dir
        if last_checkpoint(self.path) is not None and self.status != "completed":
            how = "resume it with `llmscisci run RECIPE --resume --output-dir " + f"{self.path}`"
        else:
            how = "run it again (`llmscisci run RECIPE --overwrite`)"
        raise UserError(
            f"{self.path}: the run has no {FINAL}/ model (run status: {self.status}); {how}"
        )

    def job(self) -> Job:
        """The run's recipe, loaded from its ``recipe.resolved.yaml``."""
        from llmscisci_cfg.recipe.loader import load_job

        return load_job(self.resolved, run_dir=self.path)


def read_manifest(path: Path) -> dict[str, Any]:
    """``manifest.json`` as a dict; unreadable or not an object is a `UserError`."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the run manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: the run manifest is not a JSON object")
    return manifest


def prepare(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Make ``run_dir`` ready: refuse a non-empty one unless ``resume`` or ``overwrite``."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a directory")
    busy = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if last_checkpoint(run_dir) is None:
            raise UserError(f"{run_dir}: --resume found no checkpoint in {run_dir / CHECKPOINTS}")
    elif busy and not overwrite:
        raise UserError(
            f"{run_dir}: run directory is not empty; pass --overwrite to replace it, "
            "--resume to continue it, or --output-dir for a new one"
        )
    elif busy and not is_run_dir(run_dir):
        raise UserError(
            f"{run_dir}: not empty and not a run directory (no {MANIFEST}, {RESOLVED} or "
            f"{ACCELERATE_CONFIG}); --overwrite only replaces run directories; "
            "choose another --output-dir"
        )
    elif busy:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds files a run writes first (what ``--overwrite`` may delete)."""
    return any((path / name).is_file() for name in (MANIFEST, RESOLVED, ACCELERATE_CONFIG))


def last_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest step under ``run_dir/checkpoints``, if any."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and p.is_dir()
    ]
    complete = [(step, p) for step, p in found if (p / "trainer_state.json").is_file()]
    return max(complete)[1] if complete else None


def checkpoint_step(checkpoint: Path) -> int:
    """The global step stored in a checkpoint's trainer state."""
    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` (empty when missing)."""
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop rows logged after ``step``: a resumed run logs them again from the checkpoint."""
    rows = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    write_atomic(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows))
