"""`run`: a recipe becomes a training run in a run directory (see `llmscisci_cfg.runs.rundir`).

One process trains here, in-process. ``launch.num_processes > 1`` re-invokes the same entry
point through ``accelerate launch`` (the command is printed); each worker then runs
`train` with ``--in-process``. Only rank 0 writes run-directory files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg import console
from llmscisci_cfg.errors import STORAGE_ERRORS, Problem, UserError, first_line
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.runs import manifest, rundir
from llmscisci_cfg.train import launch
from llmscisci_cfg.train.compile import Compiled
from llmscisci_cfg.train.plan import prepare

if TYPE_CHECKING:
    from llmscisci_cfg.train.build import Built


class RunFailed(Exception):
    """The launched worker processes failed; ``exit_code`` is theirs."""

    def __init__(self, exit_code: int, command: str):
        self.exit_code = exit_code
        super().__init__(f"training processes exited with code {exit_code}: {command}")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``hint`` says how to continue it."""

    def __init__(self, hint: str):
        self.hint = hint
        super().__init__(hint)


def run(
    recipe_ref: str,
    overrides: tuple[str, ...] = (),
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    in_process: bool = False,
    echo=console.info,
) -> Path:
    """Train ``recipe_ref`` into its run directory and return that directory.

    Machine problems (4-bit without CUDA, ...) and an occupied run directory are refused
    with `UserError` before any model loads; the directory is locked for the life of the run.
    An old run (``--overwrite``) waits aside (`rundir.replace`, by this process, which holds
    the lock) until the new run saves a checkpoint or completes: a new run that fails or is
    stopped before that, a mistake in the data or the model included, gives it back. A
    worker of a multi-process launch (``in_process`` with ``WORLD_SIZE > 1``) gets the run's
    resolved recipe.
    """
    worker = in_process and world_size() > 1
    prepared = prepare(
        recipe_ref, tuple(overrides), output_dir, resume, worker, absolute=True, overwrite=overwrite
    )
    refuse_machine_problems(prepared.machine_problems, recipe_ref)
    job = prepared.job
    if worker:  # the launching process holds the lock and checked the directory
        train(job, prepared.compiled, resume)
        return job.run_dir
    with rundir.RunLock(job.run_dir):
        rundir.prepare(job.run_dir, resume, overwrite)
        if resume:
            check_resumable(job)
            pass_over_damaged(job.run_dir)
        aside = None if resume else rundir.replace(job.run_dir)
        try:
            if prepared.launch.in_process or in_process:
                train(job, prepared.compiled, resume)
            else:
                launch_workers(prepared.launch, job, echo)
        except BaseException as exc:
            restored = rundir.settle_previous(job.run_dir, aside, failed=True)
            if isinstance(exc, KeyboardInterrupt):
                raise RunInterrupted(restored or resume_hint(job)) from None
            if restored:
                console.warn(restored)
            raise
        rundir.settle_previous(job.run_dir, aside, failed=False)
    return job.run_dir


def resume_hint(job: Job) -> str:
    """How to continue an interrupted run: resume from its last checkpoint, or start again."""
    run_dir = job.run_dir
    if rundir.last_checkpoint(run_dir) is None:
        busy = run_dir.is_dir() and any(run_dir.iterdir())
        return f"{run_dir}: no checkpoint was saved; start again" + (
            " with --overwrite" if busy else ""
        )
    return f"continue with: {job.command_text(resume=True)}"


def refuse_machine_problems(found: list[Problem], recipe_ref: str) -> None:
    """`UserError` listing what this machine cannot run (checked before any model loads)."""
    if found:
        lines = [str(problem.at(recipe_ref)) for problem in found]
        raise UserError("this machine cannot run the recipe:\n" + "\n".join(lines))


def check_resumable(job: Job) -> None:
    """`UserError` unless the run directory is an unfinished run of this same recipe (its
    ``recipe.resolved.yaml`` unreadable or damaged is one too, naming the file)."""
    import yaml

    run_dir = job.run_dir
    resolved = run_dir / rundir.RESOLVED
    if (run_dir / rundir.MANIFEST).is_file():
        if rundir.RunDir.open(run_dir).status == "completed":
            raise UserError(f"{run_dir}: the run already completed; nothing to resume")
    if resolved.is_file():
        try:
            before = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            before = f"{type(exc).__name__}: {first_line(exc)}"
        if not isinstance(before, dict):
            raise UserError(
                f"{resolved}: damaged, not the run's resolved recipe ({str(before)[:200]}); "
                "nothing to compare the recipe with, so the run cannot be resumed"
            )
        now = yaml.safe_load(manifest.resolved_yaml(job))
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            raise UserError(
                f"{run_dir}: the recipe differs from the run's {rundir.RESOLVED} (sections: "
                f"{', '.join(changed)}); resume with the same recipe and --set values"
            )


def pass_over_damaged(run_dir: Path) -> None:
    """Before a resume: warn about each damaged checkpoint newer than the one it starts from
    and move it out of the trainer's way (`rundir.set_aside_damaged`)."""
    start, damaged = rundir.resume_checkpoint(run_dir)
    moved = rundir.set_aside_damaged(run_dir, start)
    for line, path in zip(damaged, moved, strict=True):
        console.warn(
            f"warning: {run_dir / rundir.CHECKPOINTS}/{line}; resuming from {start.name} "
            f"instead (the damaged one is kept as {path.relative_to(run_dir)})"
        )


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


#: What `launch_workers` writes into the staging folder (and all it removes from it).
STAGED = (rundir.RESOLVED, rundir.ACCELERATE_CONFIG)


def launch_workers(plan: launch.LaunchPlan, job: Job, echo=console.info) -> None:
    """Write the workers' inputs (resolved recipe, accelerate config) into the staging folder
    beside the run directory, print the command, run it; `RunFailed` on a non-zero exit.

    The staging folder is ours alone: one left by a killed launcher holds only `STAGED` files,
    and a folder of that name holding anything else is refused, never emptied."""
    staging = launch.staging_dir(job.run_dir)
    _clear_staging(staging)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        rundir.write_atomic(staging / rundir.RESOLVED, manifest.resolved_yaml(job))
        if plan.accelerate_config is not None:
            rundir.write_atomic(staging / rundir.ACCELERATE_CONFIG, _yaml(plan.accelerate_config))
        echo(f"launch: {plan.shell()}")
        proc = subprocess.Popen(plan.argv, env={**os.environ, **plan.env, **console.child_env()})
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:
            _stop(proc)
            raise
    finally:
        _clear_staging(staging, strict=False)
    if returncode != 0:
        raise RunFailed(returncode, plan.shell())


def _clear_staging(staging: Path, strict: bool = True) -> None:
    """Remove our `STAGED` files (and interrupted atomic writes of them) and the folder once
    empty; ``strict``: a `UserError` when the folder holds anything else."""
    if not staging.exists() and not staging.is_symlink():
        return
    entries = [] if staging.is_symlink() else rundir.foreign_entries(staging, list(STAGED))
    if staging.is_symlink() or not staging.is_dir() or entries:
        if strict:
            raise UserError(
                f"{staging}: llmscisci stages the workers' inputs there, but it holds other "
                f"things ({', '.join(entries[:5]) or 'not a folder of ours'}); move it away"
            )
        return
    with contextlib.suppress(OSError):  # all ours: foreign_entries found nothing else
        for entry in staging.iterdir():
            entry.unlink()
        staging.rmdir()


def _stop(proc: subprocess.Popen, grace: float = 120.0) -> None:
    """After Ctrl-C (which the terminal sent to the workers too): let them mark the run and
    exit before the caller touches the run directory; a second Ctrl-C or the grace period
    ends them."""
    try:
        if not _terminal_signalled_the_group():  # e.g. `kill -INT` of this process alone
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=grace)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def _terminal_signalled_the_group() -> bool:
    """Whether we run in the terminal's foreground process group (its Ctrl-C reached every
    process of the launch already)."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def train(job: Job, compiled: Compiled, resume: bool) -> None:
    """This process's share of the run (all ranks call it; rank 0 writes the files).

    Rank 0 writes into the run directory the launching process (`run`) emptied. A full disk
    or a read-only file system while training is a `UserError` naming the path, with the
    manifest marked failed.
    """
    from llmscisci_cfg.models.load import quiet_bitsandbytes

    quiet_bitsandbytes()  # before anything imports bitsandbytes
    console.configure_libraries()
    from transformers import set_seed

    from llmscisci_cfg.train.build import build_trainer
    from llmscisci_cfg.train.callbacks import (
        MetricsCallback,
        PlainModesCallback,
        PreviousRunCallback,
        ResumeStateCallback,
        SignalCallback,
        WorldCallback,
        quiet_printer,
    )

    run_dir = job.run_dir
    checkpoint = rundir.last_checkpoint(run_dir) if resume else None
    world, resume_state, signal = WorldCallback(), ResumeStateCallback(checkpoint), SignalCallback()
    set_seed(job.recipe.train.seed)  # LoRA init happens before the Trainer seeds itself
    tokenizer = job.tokenizer()
    callbacks = [
        MetricsCallback(run_dir),
        world,
        resume_state,
        signal,
        PlainModesCallback(),
        PreviousRunCallback(run_dir),
    ]
    built = build_trainer(job, compiled, tokenizer, callbacks)
    quiet_printer(built.trainer)
    resume_state.trainer = built.trainer
    record = None
    try:
        if is_rank0():
            record = _start_record(job, compiled, built, checkpoint)
        started = time.perf_counter()
        built.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        train_seconds = time.perf_counter() - started
        built.trainer.save_model(str(run_dir / rundir.FINAL))  # all ranks: FSDP gathers here
        if record is not None:
            _finish_record(run_dir, record, built, world.processes, train_seconds)
            if signal.summary():
                console.warn(signal.summary())
    except BaseException as exc:
        if record is not None:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            _mark(run_dir, record, status)
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRORS:
            where = exc.filename or run_dir
            raise UserError(
                f"{where}: {exc.strerror or exc} while the run was writing "
                f"(run directory {run_dir}; its manifest says failed)"
            ) from None
        raise


def _mark(run_dir: Path, record: dict[str, Any], status: str) -> None:
    """Record the end of a run that did not complete (best effort: the disk may be full)."""
    try:
        manifest.update(run_dir, record, status=status, end_time=manifest.now())
    except OSError:
        pass


def _start_record(
    job: Job, compiled: Compiled, built: Built, checkpoint: Path | None
) -> dict[str, Any]:
    """Rank 0, before training: trim metrics past the checkpoint (and a torn last line), keep
    the accelerate config of a multi-process run, write the first manifest."""
    run_dir = job.run_dir
    if checkpoint is not None:
        rundir.truncate_metrics(run_dir, rundir.checkpoint_step(checkpoint) or 0)
    config = launch.plan_launch(job).accelerate_config
    if config is not None:
        rundir.write_atomic(run_dir / rundir.ACCELERATE_CONFIG, _yaml(config))
    record = manifest.start(
        job,
        compiled.as_dict(),
        manifest.final_info(job, compiled.lora_kwargs is not None),
        built.tokenizer.chat_template,
        str(checkpoint) if checkpoint else None,
    )
    console.info(_opening_line(job, built.data_report, checkpoint))
    report = built.data_report
    return manifest.update(
        run_dir, record, data_report=report.summary() | {"cache_key": report.cache_key}
    )


def _finish_record(
    run_dir: Path, record: dict[str, Any], built: Built, processes: list, train_seconds: float
) -> None:
    """Rank 0, after training: tokenizer (with its chat template) into final/, the modes of
    final/'s files, plots, manifest, then the model card (``final/README.md``) in place of
    TRL's draft in checkpoints/."""
    from llmscisci_cfg.runs.card import write_card
    from llmscisci_cfg.runs.plots import write_plots

    built.tokenizer.save_pretrained(str(run_dir / rundir.FINAL))
    rundir.plain_modes(run_dir / rundir.FINAL)  # safetensors writes its weights 0600
    write_plots(run_dir)
    manifest.update(
        run_dir,
        record,
        status="completed",
        end_time=manifest.now(),
        processes=processes,
        train_seconds=round(train_seconds, 4),
    )
    write_card(run_dir, record)
    (run_dir / rundir.CHECKPOINTS / "README.md").unlink(missing_ok=True)  # "fine-tuned [None]"


def _opening_line(job: Job, report, checkpoint: Path | None) -> str:
    """What is about to train, printed once by rank 0 before the progress lines."""
    dropped = sum(report.dropped.values())
    split = ", ".join(f"{n} {name}" for name, n in report.splits.items())
    start = f", resuming from {checkpoint.name}" if checkpoint else ""
    return (
        f"{job.method} on {job.model.name} ({job.device}, "
        f"{job.recipe.launch.num_processes} process(es)): {split} examples, {dropped} dropped{start}"
    )
