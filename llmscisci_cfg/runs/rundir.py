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
    runs/.<name>.lock        held by the process that writes into the run (`RunLock`)
    runs/.<name>.previous    the run an ``--overwrite`` replaced, until the new one saves
                             (the launcher that set it aside settles it)
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
from llmscisci_cfg.files import plain_mode

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
        manifest = read_manifest(path / MANIFEST)
        if not _ours(manifest):
            raise UserError(
                f"{path / MANIFEST}: not a manifest written by llmscisci; give the directory that "
                f"`llmscisci run` printed{more}"
            )
        return cls(path, manifest)

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
        if self.status == "running" and (pid := RunLock(self.path).holder()):
            raise UserError(
                f"{self.path}: the run is still training (process {pid}); its {FINAL}/ model is "
                "written when it finishes"
            )
        if last_checkpoint(self.path) is not None and self.status != "completed":
            how = "resume it with `llmscisci run RECIPE --resume --output-dir " + f"{self.path}`"
        else:
            how = "run it again (`llmscisci run RECIPE --overwrite`)"
        if previous_run(self.path).is_dir():
            how += f"; the run it replaced is kept in {previous_run(self.path)}"
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


#: Written into every manifest: how a run directory is recognised as ours.
RUN_FORMAT = "llmscisci.run/1"
#: What a run (and eval/export into it) writes; nothing else in a run directory is ours.
OURS = {
    MANIFEST,
    RESOLVED,
    METRICS,
    ACCELERATE_CONFIG,
    CHECKPOINTS,
    FINAL,
    PLOTS,
    "eval",
    "exported",
}
_LEGACY_KEYS = {"status", "recipe", "versions", "compiled", "final"}


def prepare(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Check that ``run_dir`` may be written, before anything is built; return whether an old
    run is there to be replaced (`replace` does it, once the trainer is built).

    A non-empty directory is refused unless it is one of our runs and ``resume`` or
    ``overwrite`` says what to do with it; ``--overwrite`` also refuses a run directory holding
    files we did not write. Nothing is created or deleted here.
    """
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if run_dir.is_symlink():
        target = os.readlink(run_dir)
        state = "a dangling symbolic link" if not run_dir.exists() else "a symbolic link"
        raise UserError(f"{run_dir}: is {state} (to {target}); give the directory itself")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a directory")
    check_writable(run_dir)
    busy = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if last_checkpoint(run_dir) is None:
            raise UserError(f"{run_dir}: --resume found no checkpoint in {run_dir / CHECKPOINTS}")
        if not is_run_dir(run_dir):
            raise UserError(
                f"{run_dir}: not a run directory (no valid {MANIFEST}); nothing to resume"
            )
        return False
    if busy and not overwrite:
        raise UserError(
            f"{run_dir}: run directory is not empty; pass --overwrite to replace it, "
            "--resume to continue it, or --output-dir for a new one"
        )
    if busy and not is_run_dir(run_dir):
        raise UserError(
            f"{run_dir}: not empty and not a run directory (no valid {MANIFEST} of ours); "
            "--overwrite only replaces run directories; choose another --output-dir"
        )
    foreign = foreign_entries(run_dir) if busy else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise UserError(
            f"{run_dir}: holds files llmscisci did not write ({shown}); --overwrite deletes only "
            "run directories, so move them out or choose another --output-dir"
        )
    return busy


def replace(run_dir: Path) -> Path | None:
    """Make ``run_dir`` an empty directory for a new run (the caller holds its lock). An old
    run there (already checked by `prepare`: ours, nothing foreign in it) is moved aside to
    `previous_run` and its path returned: the caller owns it until `settle_previous`.

    An aside left by a launcher that was killed is the older run: it is kept when what is in
    ``run_dir`` (the killed run's start) saved nothing, else it is dropped."""
    aside = previous_run(run_dir)
    if aside.is_dir():
        if not saved_something(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            return aside
        shutil.rmtree(aside, ignore_errors=True)
    if not (run_dir.is_dir() and any(run_dir.iterdir())):
        run_dir.mkdir(parents=True, exist_ok=True)
        return None
    if not is_run_dir(run_dir):  # not a run: only what a trainer made before (checkpoints/)
        shutil.rmtree(run_dir)
        run_dir.mkdir()
        return None
    os.rename(run_dir, aside)
    run_dir.mkdir()
    return aside


def previous_run(run_dir: Path) -> Path:
    """Where an ``--overwrite``'d run waits, beside the new one, until the new one has saved a
    checkpoint or completed."""
    return run_dir.with_name(f".{run_dir.name}.previous")


def discard_previous(run_dir: Path) -> None:
    """The new run saved a checkpoint: the run it replaced goes."""
    shutil.rmtree(previous_run(run_dir), ignore_errors=True)


def saved_something(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` has something to keep: a checkpoint that reads back, or
    a manifest that says it completed (a ``final/`` alone may be half written)."""
    if last_checkpoint(run_dir) is not None:
        return True
    try:
        return read_manifest(run_dir / MANIFEST).get("status") == "completed"
    except UserError:
        return False


def settle_previous(run_dir: Path, aside: Path | None, failed: bool) -> str | None:
    """After a run that set ``aside`` aside (`replace`): the old run is put back when the new
    one ``failed`` before saving anything (`saved_something`), else removed. Returns what the
    user should be told, or None. The new run is moved away before the old one moves in, so an
    interruption in between leaves one of them in place, never neither."""
    if aside is None or not aside.is_dir():
        if failed and run_dir.is_dir() and not any(p.is_file() for p in run_dir.rglob("*")):
            shutil.rmtree(run_dir, ignore_errors=True)  # made for this run, which wrote nothing
        return None
    if not failed or saved_something(run_dir):
        shutil.rmtree(aside, ignore_errors=True)
        return None
    failed_dir = run_dir.with_name(f".{run_dir.name}.failed")
    try:
        shutil.rmtree(failed_dir, ignore_errors=True)
        if run_dir.exists():
            os.rename(run_dir, failed_dir)
        os.rename(aside, run_dir)
    except OSError as exc:
        return (
            f"{run_dir}: the new run saved nothing, and the run it replaced could not be put "
            f"back ({exc.strerror or exc}); it is in {aside}"
        )
    shutil.rmtree(failed_dir, ignore_errors=True)
    return f"{run_dir}: the new run saved nothing; the run it replaced is back in its place"


def check_writable(run_dir: Path) -> None:
    """`UserError` unless we can create (or write into) ``run_dir``: a probe file is created
    and removed in the nearest existing folder (``os.access`` says yes to root on /proc or a
    read-only mount)."""
    probe = run_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{run_dir}: cannot write there ({probe} is not a directory)")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".llmscisci-probe-")
    except OSError as exc:
        raise UserError(f"{run_dir}: cannot write there ({probe}: {exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a manifest we wrote (what ``--overwrite`` may replace)."""
    file = path / MANIFEST
    if not file.is_file() or file.stat().st_size > 16 * 1024 * 1024:
        return False
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(manifest, dict) and _ours(manifest)


def _ours(manifest: dict[str, Any]) -> bool:
    """Our format marker, or (runs from before it) the keys every manifest of ours has."""
    return manifest.get("format") == RUN_FORMAT or _LEGACY_KEYS <= set(manifest)


def foreign_entries(run_dir: Path) -> list[str]:
    """Names in ``run_dir`` that no run writes (our own temporary files excepted)."""
    return sorted(
        p.name
        for p in run_dir.iterdir()
        if p.name not in OURS and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


class RunLock:
    """An exclusive lock on a run directory, held for the life of a run, a resume, an eval that
    writes into it, or an export. The lock file sits beside the directory (which a run may
    replace) and holds the owner's pid; the OS releases it when the process dies."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir.parent / f".{self.run_dir.name}.lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.run_dir}: cannot write there: {exc.strerror or exc}") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise UserError(
                    f"{self.run_dir}: cannot write there ({self.path}: {exc.strerror or exc})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _pid(fd)
                os.close(fd)
                raise UserError(
                    f"{self.run_dir}: in use by process {holder} (lock {self.path}); wait for "
                    "it to finish, or stop it"
                ) from None
            try:  # the file we locked may have been removed by its previous owner meanwhile
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def holder(self) -> str | None:
        """The pid of the process holding the lock, or None when none does; never takes it."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid(fd)
        finally:
            os.close(fd)  # releases the shared lock, if it was taken
        return None

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def _pid(lock_fd: int) -> str:
    return os.pread(lock_fd, 64, 0).decode(errors="replace").strip() or "another process"


def last_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest step under ``run_dir/checkpoints`` whose trainer state
    reads back (a checkpoint torn by a kill is passed over for the one before it)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and p.is_dir()
    ]
    for _, path in sorted(found, reverse=True):
        if checkpoint_step(path) is not None:
            return path
    return None


def checkpoint_step(checkpoint: Path) -> int | None:
    """The global step stored in a checkpoint's trainer state (None when it does not read)."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one.

    The file gets the mode a plain ``open`` would give it (`files.plain_mode`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        plain_mode(fd)
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
    """The rows of ``metrics.jsonl`` (empty when missing).

    A torn last line (what a kill or a full disk leaves) is left out; a broken line anywhere
    else is a `UserError` naming it.
    """
    path = run_dir / METRICS
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            if number == len(lines):  # torn by an interruption: repaired on resume
                break
            raise UserError(f"{path}:{number}: not a JSON object; the metrics file is damaged")
        rows.append(row)
    return rows


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop rows logged after ``step``: a resumed run logs them again from the checkpoint."""
    rows = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    write_atomic(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows))
