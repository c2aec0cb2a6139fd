"""How a recipe is launched: in-process, or through ``accelerate launch`` for several processes.

Pure functions, no heavy imports: `plan` prints the same command `run` executes.
On CPU, ``accelerate launch --num_processes 2 --cpu`` silently runs one process; real
2-rank CPU DDP needs ``--multi_gpu`` with ``ACCELERATE_USE_CPU=true``, which is what
we generate.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.runs.rundir import ACCELERATE_CONFIG


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


def resolve_device(recipe: Recipe, cuda: bool) -> str:
    """``cuda`` or ``cpu`` for this machine."""
    if recipe.launch.device == "auto":
        return "cuda" if cuda else "cpu"
    return recipe.launch.device


def mixed_precision(recipe: Recipe, device: str) -> str:
    """``bf16``, ``fp16`` or ``no``: 'auto' is bf16 on CUDA and off on CPU."""
    mp = recipe.launch.mixed_precision
    if mp == "auto":
        return "bf16" if device == "cuda" else "no"
    return mp


def plan_launch(
    recipe: Recipe,
    recipe_ref: str,
    overrides: tuple[str, ...],
    output_dir: str,
    cuda: bool,
    extra_args: tuple[str, ...] = (),
) -> LaunchPlan:
    """The command that runs ``recipe``; the worker re-enters ``llmscisci run --in-process``."""
    run_args = [
        "run",
        recipe_ref,
        *[f"--set={o}" for o in overrides],
        "--output-dir",
        output_dir,
        *extra_args,
    ]
    n = recipe.launch.num_processes
    if n == 1:
        return LaunchPlan(in_process=True, argv=["llmscisci", *run_args])
    device = resolve_device(recipe, cuda)
    config_path = f"{output_dir}/{ACCELERATE_CONFIG}"
    config = None if recipe.launch.accelerate_config else accelerate_config(recipe, device)
    argv = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(recipe.resolve(recipe.launch.accelerate_config))
        if recipe.launch.accelerate_config
        else config_path,
    ]
    env: dict[str, str] = {}
    if device == "cpu":
        argv += ["--multi_gpu"]
        env["ACCELERATE_USE_CPU"] = "true"
    argv += ["--num_processes", str(n), "-m", "llmscisci_cfg", *run_args, "--in-process"]
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
