"""`run`: a recipe becomes a training run in a run directory (see `llmscisci_cfg.rundir`).

One process trains here, in-process. ``launch.num_processes > 1`` re-invokes the same entry
point through ``accelerate launch`` (the command is printed); each worker then runs
`train` with ``--in-process``. Only rank 0 writes run-directory files.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from llmscisci_cfg import checks, launch, manifest, rundir
from llmscisci_cfg.compile import compile_recipe
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.loader import load_recipe
from llmscisci_cfg.manifest import FinalInfo, local_model_dir
from llmscisci_cfg.schema import Recipe


class RunFailed(Exception):
    """The launched worker processes failed; ``exit_code`` is theirs."""

    def __init__(self, exit_code: int, command: str):
        self.exit_code = exit_code
        super().__init__(f"training processes exited with code {exit_code}: {command}")


def run(
    recipe_ref: str,
    overrides: tuple[str, ...] = (),
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    in_process: bool = False,
    echo=print,
) -> Path:
    """Train ``recipe_ref`` into its run directory and return that directory.

    Machine problems (4-bit without CUDA, ...) and an occupied run directory are refused
    with `UserError` before any model loads.
    """
    recipe = load_recipe(recipe_ref, overrides)
    refuse_machine_problems(recipe, recipe_ref)
    run_dir = Path(output_dir or rundir.default_run_dir(recipe)).absolute()
    worker = in_process and world_size() > 1
    if not worker:
        if resume:
            check_resumable(run_dir, recipe)
        rundir.prepare(run_dir, resume, overwrite)
    cuda = checks.cuda_present()
    plan = launch.plan_launch(
        recipe, recipe_ref, tuple(overrides), str(run_dir), cuda, ("--resume",) if resume else ()
    )
    if plan.in_process or in_process:
        train(recipe, recipe_ref, tuple(overrides), run_dir, resume, cuda)
    else:
        launch_workers(plan, run_dir, echo)
    return run_dir


def refuse_machine_problems(recipe: Recipe, recipe_ref: str) -> None:
    """`UserError` listing what this machine cannot run (checked before any model loads)."""
    found = checks.machine_problems(recipe)
    if found:
        lines = [f"{recipe_ref}: {'.'.join(map(str, path))}: {message}" for path, message in found]
        raise UserError("this machine cannot run the recipe:\n" + "\n".join(lines))


def check_resumable(run_dir: Path, recipe: Recipe) -> None:
    """`UserError` unless ``run_dir`` is an unfinished run of this same recipe."""
    import yaml

    resolved = run_dir / rundir.RESOLVED
    if (run_dir / rundir.MANIFEST).is_file():
        if manifest.read(run_dir).get("status") == "completed":
            raise UserError(f"{run_dir}: the run already completed; nothing to resume")
    if resolved.is_file():
        before = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        now = yaml.safe_load(manifest.resolved_yaml(recipe))
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            raise UserError(
                f"{run_dir}: the recipe differs from the run's {rundir.RESOLVED} (sections: "
                f"{', '.join(changed)}); resume with the same recipe and --set values"
            )


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def launch_workers(plan: launch.LaunchPlan, run_dir: Path, echo=print) -> None:
    """Write the accelerate config, print the command, run it; `RunFailed` on a non-zero exit."""
    import yaml

    if plan.accelerate_config is not None:
        text = yaml.safe_dump(plan.accelerate_config, sort_keys=False)
        rundir.write_atomic(run_dir / rundir.ACCELERATE_CONFIG, text)
    echo(f"launch: {plan.shell()}")
    result = subprocess.run(plan.argv, env={**os.environ, **plan.env})
    if result.returncode != 0:
        raise RunFailed(result.returncode, plan.shell())


def final_info(recipe: Recipe, lora: bool) -> FinalInfo:
    """What ``final/`` will hold, for `eval` and `export` to read back."""
    name = recipe.model.name_or_path
    local = local_model_dir(recipe)
    builtin = name.startswith("builtin:")
    return FinalInfo(
        kind="adapter" if lora else "full",
        base_model=str(local) if local else name,
        base_seed=recipe.train.seed if builtin else None,
    )


def train(
    recipe: Recipe,
    recipe_ref: str,
    overrides: tuple[str, ...],
    run_dir: Path,
    resume: bool,
    cuda: bool,
) -> None:
    """This process's share of the run (all ranks call it; rank 0 writes the files)."""
    import logging

    # bitsandbytes warns about an optional CPU kernel package on import; it is noise here
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from transformers import set_seed

    from llmscisci_cfg.build import build_trainer
    from llmscisci_cfg.callbacks import MetricsCallback, ResumeStateCallback, WorldCallback

    compiled = compile_recipe(recipe, cuda, run_dir)
    checkpoint = rundir.last_checkpoint(run_dir) if resume else None
    rank0 = is_rank0()
    record = None
    if rank0:
        if checkpoint is not None:
            rundir.truncate_metrics(run_dir, rundir.checkpoint_step(checkpoint))
        record = manifest.start(
            run_dir,
            recipe,
            recipe_ref,
            overrides,
            compiled.as_dict(),
            final_info(recipe, compiled.lora_kwargs is not None),
            str(checkpoint) if checkpoint else None,
        )
    world, resume_state = WorldCallback(), ResumeStateCallback(checkpoint)
    set_seed(recipe.train.seed)  # LoRA init happens before the Trainer seeds itself
    built = build_trainer(recipe, compiled, [MetricsCallback(run_dir), world, resume_state])
    resume_state.trainer = built.trainer
    if record is not None:
        print(_opening_line(recipe, compiled.device, built.data_report, checkpoint), flush=True)
        manifest.update(
            run_dir,
            record,
            rewards=manifest.reward_info(recipe, built.reward_funcs),
            data_report=built.data_report.summary() | {"cache_key": built.data_report.cache_key},
        )
    try:
        started = time.perf_counter()
        built.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        train_seconds = time.perf_counter() - started
        built.trainer.save_model(str(run_dir / rundir.FINAL))  # all ranks: FSDP gathers here
    except BaseException:
        if record is not None:
            manifest.update(run_dir, record, status="failed", end_time=manifest.now())
        raise
    if record is not None:
        built.tokenizer.save_pretrained(str(run_dir / rundir.FINAL))
        from llmscisci_cfg.plots import write_plots

        write_plots(run_dir)
        manifest.update(
            run_dir,
            record,
            status="completed",
            end_time=manifest.now(),
            processes=world.processes,
            train_seconds=round(train_seconds, 4),
        )


def _opening_line(recipe: Recipe, device: str, report, checkpoint: Path | None) -> str:
    """What is about to train, printed once by rank 0 before the progress bar."""
    dropped = sum(report.dropped.values())
    split = ", ".join(f"{n} {name}" for name, n in report.splits.items())
    start = f", resuming from {checkpoint.name}" if checkpoint else ""
    return (
        f"{recipe.method.name} on {recipe.model.name_or_path} ({device}, "
        f"{recipe.launch.num_processes} process(es)): {split} examples, {dropped} dropped{start}"
    )
