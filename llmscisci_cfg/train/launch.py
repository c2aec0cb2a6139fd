"""How a recipe is launched: in-process, or through ``accelerate launch`` for several processes.

Pure functions, no heavy imports: `plan` prints the same command `run` executes.
On CPU, ``accelerate launch --num_processes 2 --cpu`` silently runs one process; real
2-rank CPU DDP needs ``--multi_gpu`` with ``ACCELERATE_USE_CPU=true``, which is what
we generate. Workers start from the run's ``recipe.resolved.yaml`` (written before they
launch), not from the user's recipe and ``--set`` values, which they get only as provenance
(``LLMSCISCI_ORIGIN``) for the manifest.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.recipe.resolve import ORIGIN_ENV, Job
from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.runs.rundir import ACCELERATE_CONFIG, RESOLVED
from llmscisci_cfg.train.compile import mixed_precision


@dataclass(frozen=True)
class LaunchPlan:
    """What `run` executes: ``argv`` with ``env`` added; ``accelerate_config`` is written to the run dir."""

    in_process: bool
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    accelerate_config: dict[str, Any] | None = None

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + shlex.join(self.argv)


def staging_dir(run_dir: Path) -> Path:
    """Where `run` writes the workers' inputs (beside the run directory, never in it: an old
    run there is replaced only once the workers have built their trainers)."""
    return run_dir.parent / f".{run_dir.name}.launch"


def plan_launch(job: Job, resume: bool = False, overwrite: bool = False) -> LaunchPlan:
    """The command that runs ``job``: itself in-process, or ``accelerate launch`` of workers
    that re-enter ``llmscisci run STAGING/recipe.resolved.yaml --in-process``."""
    recipe, run_dir = job.recipe, job.run_dir
    n = recipe.launch.num_processes
    if n == 1:
        return LaunchPlan(in_process=True, argv=job.command(resume=resume))
    own = recipe.launch.accelerate_config
    staging = staging_dir(run_dir)
    config_file = str(job.path(own)) if own else str(staging / ACCELERATE_CONFIG)
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file]
    env: dict[str, str] = {}
    if job.device == "cpu":
        argv += ["--multi_gpu"]
        env["ACCELERATE_USE_CPU"] = "true"
    origin = {"ref": job.origin.ref, "overrides": list(job.origin.overrides)}
    env[ORIGIN_ENV] = json.dumps(origin)
    argv += ["--num_processes", str(n), "-m", "llmscisci_cfg", "run", str(staging / RESOLVED)]
    argv += ["--output-dir", str(run_dir), *(["--resume"] if resume else [])]
    argv += [*(["--overwrite"] if overwrite else []), "--in-process"]
    config = None if own else accelerate_config(recipe, job.device)
    return LaunchPlan(in_process=False, argv=argv, env=env, accelerate_config=config)


def accelerate_config(recipe: Recipe, device: str) -> dict[str, Any]:
    """A minimal accelerate config for ``launch.distributed`` (ddp, fsdp, deepspeed_zero2/3)."""
    la = recipe.launch
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": la.num_processes,
        "mixed_precision": mixed_precision(recipe, device),
        "use_cpu": device == "cpu",
        "distributed_type": "MULTI_CPU" if device == "cpu" else "MULTI_GPU",
    }
    if la.distributed == "fsdp":
        cfg["distributed_type"] = "FSDP"
        cfg["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": False,
            "fsdp_reshard_after_forward": True,
        }
    elif la.distributed.startswith("deepspeed"):
        stage = 3 if la.distributed.endswith("3") else 2
        cfg["distributed_type"] = "DEEPSPEED"
        cfg["deepspeed_config"] = {
            "zero_stage": stage,
            "gradient_accumulation_steps": recipe.train.gradient_accumulation_steps,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": stage == 3,
            "zero3_save_16bit_model": stage == 3,
        }
    return cfg
