"""The run directory: its layout, the one reader of it (`RunDir`), whether we may write into
it, and atomic file writes.

Layout (rank 0 writes all of it)::

    runs/<name>/
      manifest.json          provenance; written atomically at start and at the end; its
                             ``inventory`` lists every path the run (or eval/export) wrote there
      recipe.resolved.yaml   the recipe with defaults filled and paths made absolute
      metrics.jsonl          one JSON object per logged step
      accelerate_config.yaml only for multi-process runs
      checkpoints/           TRL checkpoints (+ llmscisci_state.json; resume reads the newest
                             sound one, `checkpoint_damage`)
      final/                 adapter or full model + tokenizer with the training chat template
      plots/                 loss and reward curves (PNG)
    runs/.<name>.lock        held by the process that writes into the run (`RunLock`)
    runs/.<name>.previous    the run an ``--overwrite`` replaced, until the new one saves
                             (the launcher that set it aside settles it)

``--overwrite`` removes exactly what the inventory lists and refuses a run directory holding
anything else (`check_replaceable`). Everything a run writes gets the mode a plain ``open``
gives under the umask (`plain_modes`; safetensors writes 0600).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.errors import UserError, first_line
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

#: Saved beside TRL's files in each checkpoint: the run-level counters resume restores.
RESUME_STATE = "llmscisci_state.json"
#: The plots `runs.plots.write_plots` may draw.
PLOT_FILES = ("loss.png", "rewards.png")

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
_LEGACY_KEYS = {"status", "recipe", "versions", "compiled", "final"}
#: The manifest key listing what was written into the run directory (`run_inventory`).
INVENTORY = "inventory"


def run_inventory(claimed: list[str] = ()) -> list[str]:
    """What a run writes, relative to its directory (``x/``: a folder the run makes and fills,
    all of it), plus ``claimed`` (what eval and export wrote there, kept across a resume)."""
    own = [MANIFEST, RESOLVED, METRICS, ACCELERATE_CONFIG, f"{CHECKPOINTS}/", f"{FINAL}/"]
    own += [f"{PLOTS}/{name}" for name in PLOT_FILES]
    return list(dict.fromkeys([*own, *claimed]))


def inventory(manifest: dict[str, Any]) -> list[str] | None:
    """The manifest's inventory, or None when it has no valid one (then nothing in the
    directory may be deleted): a list of plain relative paths that includes the manifest."""
    entries = manifest.get(INVENTORY)
    if not isinstance(entries, list) or MANIFEST not in entries:
        return None
    for entry in entries:
        if not isinstance(entry, str) or not _plain_relative(entry.removesuffix("/")):
            return None
    return entries


def _plain_relative(path: str) -> bool:
    """``a/b.txt`` yes; ``""``, ``/a``, ``a/../b``, ``./a``, ``a//b`` no."""
    parts = path.split("/")
    return bool(path) and "\\" not in path and all(p not in ("", ".", "..") for p in parts)


def prepare(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Check that ``run_dir`` may be written, before anything is built; return whether an old
    run is there to be replaced (`replace` does it, once the trainer is built).

    A non-empty directory is refused unless it is one of our runs and ``resume`` or
    ``overwrite`` says what to do with it; ``--overwrite`` also refuses a run directory holding
    anything its manifest's inventory does not list (`check_replaceable`). ``--resume`` needs a
    checkpoint that is sound (`resume_checkpoint`). Nothing is created or deleted here.
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
        if not checkpoints(run_dir):
            raise UserError(f"{run_dir}: --resume found no checkpoint in {run_dir / CHECKPOINTS}")
        if not is_run_dir(run_dir):
            raise UserError(
                f"{run_dir}: not a run directory (no valid {MANIFEST}); nothing to resume"
            )
        resume_checkpoint(run_dir)  # a UserError when none is sound
        return False
    if busy and not overwrite:
        raise UserError(
            f"{run_dir}: run directory is not empty; pass --overwrite to replace it, "
            "--resume to continue it, or --output-dir for a new one"
        )
    if busy:
        check_replaceable(run_dir)
    return busy


def check_replaceable(run_dir: Path) -> None:
    """`UserError` unless everything in ``run_dir`` is listed in its manifest's inventory (or
    it holds nothing but empty folders): what ``--overwrite`` may remove."""
    if not _has_files(run_dir):
        return
    if not is_run_dir(run_dir):
        raise UserError(
            f"{run_dir}: not empty and not a run directory (no valid {MANIFEST} of ours); "
            "--overwrite only replaces run directories; choose another --output-dir"
        )
    entries = inventory(read_manifest(run_dir / MANIFEST))
    if entries is None:
        raise UserError(
            f"{run_dir / MANIFEST}: lists no inventory of the files the run wrote (a manifest "
            "from an older llmscisci, or not ours), so --overwrite cannot tell them from yours "
            "and deletes nothing; move the folder away or choose another --output-dir"
        )
    foreign = foreign_entries(run_dir, entries)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise UserError(
            f"{run_dir}: holds files llmscisci did not write ({shown}); --overwrite removes only "
            "what the run recorded writing, so move them out or choose another --output-dir"
        )


def foreign_entries(run_dir: Path, entries: list[str]) -> list[str]:
    """Paths under ``run_dir`` (relative; a folder as ``x/``) that ``entries`` (an inventory)
    does not account for. Our own interrupted atomic writes (``.NAME.*.tmp`` beside a listed
    NAME) count as ours; symbolic links never do; a folder no entry lies in is named, not
    walked."""
    listed = {e for e in entries if not e.endswith("/")}
    folders = tuple(e for e in entries if e.endswith("/"))
    ancestors = {"/".join(e.split("/")[:i]) for e in entries for i in range(1, e.count("/") + 1)}
    found: list[str] = []
    for top, dirs, names in os.walk(run_dir):
        base = Path(top).relative_to(run_dir).as_posix()
        prefix = "" if base == "." else base + "/"
        for name in list(dirs):
            rel = prefix + name
            if (Path(top) / name).is_symlink():
                names.append(name)  # a link to a folder: judged as a file, never followed
                dirs.remove(name)
            elif (rel + "/").startswith(folders):
                dirs.remove(name)  # a folder the run made: all of it is the run's
            elif rel not in ancestors:
                found.append(rel + "/")
                dirs.remove(name)
        for name in names:
            rel = prefix + name
            if rel.startswith(folders) or (rel in listed and not (Path(top) / name).is_symlink()):
                continue
            if not _our_temp(prefix, name, listed):
                found.append(rel)
    return sorted(found)


_TEMP = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp$")


def _our_temp(prefix: str, name: str, listed: set[str]) -> bool:
    """A temporary file `write_atomic` left (``.NAME.xxxxxxxx.tmp``) beside a listed NAME."""
    m = _TEMP.match(name)
    return m is not None and prefix + m.group(1) in listed


def _has_files(path: Path) -> bool:
    """Whether anything but (empty) folders lies under ``path``."""
    return any(p.is_symlink() or not p.is_dir() for p in path.rglob("*"))


def claim(run_dir: Path, entries: list[str]) -> None:
    """Add ``entries`` (paths relative to ``run_dir``, ``x/`` for a folder) to the run's
    inventory, so that ``--overwrite`` may remove them: eval and export call it for what they
    wrote into the run (holding its lock). A manifest without a valid inventory is left as it
    is (nothing in such a run is deleted)."""
    manifest = read_manifest(run_dir / MANIFEST)
    listed = inventory(manifest)
    if listed is None:
        return
    tidy = [posixpath.normpath(e) + ("/" if e.endswith("/") else "") for e in entries]
    tidy = [e for e in tidy if _plain_relative(e.removesuffix("/"))]
    manifest[INVENTORY] = list(dict.fromkeys([*listed, *tidy]))
    if manifest[INVENTORY] != listed:
        write_json(run_dir / MANIFEST, manifest)


def replace(run_dir: Path) -> Path | None:
    """Make ``run_dir`` an empty directory for a new run (the caller holds its lock). An old
    run there (already checked by `prepare`: nothing in it outside its inventory) is moved
    aside to `previous_run` and its path returned: the caller owns it until `settle_previous`.

    An aside left by a launcher that was killed is the older run: it is kept when what is in
    ``run_dir`` (the killed run's start) saved nothing, else it is dropped. Whatever would be
    deleted is checked again first (`check_replaceable`)."""
    aside = previous_run(run_dir)
    if aside.is_dir():
        if run_dir.is_dir():
            check_replaceable(run_dir)
        if not saved_something(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            return aside
        shutil.rmtree(aside, ignore_errors=True)
    if not (run_dir.is_dir() and any(run_dir.iterdir())):
        run_dir.mkdir(parents=True, exist_ok=True)
        return None
    check_replaceable(run_dir)
    if not _has_files(run_dir):  # only folders a trainer made before (an empty checkpoints/)
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
    """Whether the run in ``run_dir`` has something to keep: a sound checkpoint, or a manifest
    that says it completed (a ``final/`` alone may be half written)."""
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
        if failed and run_dir.is_dir() and not _has_files(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # made for this run, which wrote nothing
        return None
    if not failed or saved_something(run_dir):
        shutil.rmtree(aside, ignore_errors=True)
        return None
    failed_dir = None
    try:
        if run_dir.exists():  # a fresh name: a folder of the user's beside the run stays
            failed_dir = Path(
                tempfile.mkdtemp(prefix=f".{run_dir.name}.failed-", dir=run_dir.parent)
            )
            os.rename(run_dir, failed_dir)
        os.rename(aside, run_dir)
    except OSError as exc:
        return (
            f"{run_dir}: the new run saved nothing, and the run it replaced could not be put "
            f"back ({exc.strerror or exc}); it is in {aside}"
        )
    if failed_dir is not None:
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
    """Whether ``path`` holds a manifest we wrote (a run that commands may read; what
    ``--overwrite`` may remove is `check_replaceable`'s question)."""
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


def checkpoints(run_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders under ``run_dir/checkpoints``, newest (highest N) first."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and p.is_dir() and not p.is_symlink()
    ]
    return [p for _, p in sorted(found, reverse=True)]


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint under ``run_dir/checkpoints`` that is sound (`checkpoint_damage`):
    one torn by a kill or a full disk is passed over for the one before it."""
    return next((p for p in checkpoints(run_dir) if checkpoint_damage(p) is None), None)


def resume_checkpoint(run_dir: Path) -> tuple[Path, list[str]]:
    """The checkpoint a resume starts from, and one line per newer damaged checkpoint passed
    over; a `UserError` naming the damaged files when no checkpoint is sound."""
    damaged = []
    for path in checkpoints(run_dir):
        problem = checkpoint_damage(path)
        if problem is None:
            return path, damaged
        damaged.append(f"{path.name}: {problem}")
    found = "; ".join(damaged) or f"no checkpoint in {run_dir / CHECKPOINTS}"
    raise UserError(
        f"{run_dir}: no checkpoint can be resumed from ({found}); start again with --overwrite"
    )


def set_aside_damaged(run_dir: Path, start: Path) -> list[Path]:
    """Rename the damaged checkpoints newer than ``start`` to ``damaged-checkpoint-N`` (out of
    the trainer's way: the resumed run saves those steps again); return their new paths."""
    moved = []
    for path in checkpoints(run_dir):
        if path == start:
            break
        target = path.with_name(f"damaged-{path.name}")
        n = 1
        while target.exists():
            target, n = path.with_name(f"damaged-{path.name}.{n}"), n + 1
        os.rename(path, target)
        moved.append(target)
    return moved


def checkpoint_step(checkpoint: Path) -> int | None:
    """The global step stored in a checkpoint's trainer state (None when it does not read)."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


#: `ResumeStateCallback`'s keys and the types they must have.
_RESUME_KEYS = {
    "total_loss_scalar": (int, float),
    "tr_loss": (int, float),
    "globalstep_last_logged": (int,),
    "total_train_tokens": (int, float, type(None)),
}
#: Files a resume loads with ``torch.load`` (zip archives since torch 1.6).
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
#: JSON files a resume reads besides the trainer state: model/adapter/generation configs and
#: the index of sharded weights.
_JSON_READ = {"config.json", "adapter_config.json", "generation_config.json"}


def checkpoint_damage(checkpoint: Path) -> str | None:
    """Why a resume cannot start from ``checkpoint`` (naming the damaged file), or None.

    Cheap checks of every file a resume reads: the trainer state and our resume state parse,
    each ``*.safetensors`` header covers its file (safetensors' own header read, no tensor is
    loaded), each ``torch.save`` archive has its zip directory, each JSON config parses.
    """
    if checkpoint_step(checkpoint) is None:
        return "trainer_state.json is missing or unreadable"
    problem = _resume_state_problem(checkpoint / RESUME_STATE)
    if problem:
        return f"{RESUME_STATE} {problem}"
    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            problem = _safetensors_problem(path)
        elif path.suffix in _TORCH_SUFFIXES:
            problem = _zip_problem(path)
        elif path.name in _JSON_READ or path.name.endswith(".index.json"):
            problem = _json_problem(path)
        if problem:
            return f"{path.relative_to(checkpoint).as_posix()} {problem}"
    return None


def _resume_state_problem(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "is missing (the checkpoint was not finished)"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"does not read ({exc})"
    if not isinstance(data, dict) or any(
        not isinstance(data.get(k, ()), types) or isinstance(data.get(k), bool)
        for k, types in _RESUME_KEYS.items()
    ):
        return "is not a resume state (keys or values wrong)"
    return None


def _safetensors_problem(path: Path) -> str | None:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy"):
            return None
    except Exception as exc:  # SafetensorError, OSError: a torn or foreign file
        return f"does not read ({first_line(exc)})"


def _zip_problem(path: Path) -> str | None:
    import zipfile

    try:
        with zipfile.ZipFile(path):
            return None
    except (OSError, zipfile.BadZipFile) as exc:
        return f"does not read ({first_line(exc)})"


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"does not read ({first_line(exc)})"
    return None


def plain_modes(folder: Path) -> None:
    """Give every file under ``folder`` the mode a plain ``open`` would (0666 less the umask)
    and every folder 0777 less the umask, where a library chose a private one (safetensors
    writes 0600): colleagues read the model too. Files that are not ours are left alone."""
    mask = os.umask(0)
    os.umask(mask)
    if not folder.is_dir() or folder.is_symlink():
        return
    for top, dirs, names in os.walk(folder):
        for name, mode in [(n, 0o777) for n in dirs] + [(n, 0o666) for n in names]:
            path = Path(top) / name
            try:
                info = path.lstat()
                want = (mode | (0o111 if info.st_mode & 0o100 else 0)) & ~mask
                if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o777 != want:
                    os.chmod(path, want)
            except OSError:
                pass  # not ours, or gone: leave it


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
