"""Launch plans: one process in-process; several through accelerate with a valid config."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.checks import machine_problems
from llmscisci_cfg.recipe.resolve import Origin
from llmscisci_cfg.train.launch import plan_launch
from llmscisci_cfg.train.runner import refuse_machine_problems
from tests.run_helpers import job_of, recipe_text


def _recipe(extra: str = "", device: str = "cpu", cuda: bool = False, overrides=()):
    text = recipe_text("sft").replace("device: cpu", f"device: {device}")
    job = job_of(text.replace("launch:\n", "launch:\n" + extra), cuda=cuda, run_dir="out")
    return dataclasses.replace(job, origin=Origin("r.yaml", tuple(overrides)))


def test_one_process_runs_in_process():
    plan = plan_launch(_recipe())
    assert plan.in_process and plan.accelerate_config is None
    assert plan.argv == ["llmscisci", "run", "r.yaml", "--output-dir", "out"]
    assert plan_launch(_recipe(), resume=True).argv[-1] == "--resume"


def test_two_cpu_processes_use_multi_gpu_with_accelerate_use_cpu():
    """`accelerate launch --cpu --num_processes 2` silently runs one process; this does not.

    Workers start from the run's resolved recipe; the user's recipe and --set values travel
    only as provenance, for the manifest."""
    plan = plan_launch(_recipe("  num_processes: 2\n", overrides=("train.seed=1",)))
    assert not plan.in_process
    assert plan.env == {
        "ACCELERATE_USE_CPU": "true",
        "LLMSCISCI_ORIGIN": '{"ref": "r.yaml", "overrides": ["train.seed=1"]}',
    }
    argv = plan.argv
    assert (
        argv[1:3] == ["-m", "accelerate.commands.launch"]
        and "--multi_gpu" in argv
        and "--cpu" not in argv
    )
    assert argv[argv.index("--num_processes") + 1] == "2"
    assert argv[-7:] == [
        "-m",
        "llmscisci_cfg",
        "run",
        ".out.launch/recipe.resolved.yaml",  # beside the run dir: nothing is written in it yet
        "--output-dir",
        "out",
        "--in-process",
    ]
    assert plan.shell().startswith("ACCELERATE_USE_CPU=true ")
    assert plan.accelerate_config["distributed_type"] == "MULTI_CPU"


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("ddp", "MULTI_GPU"),
        ("fsdp", "FSDP"),
        ("deepspeed_zero2", "DEEPSPEED"),
        ("deepspeed_zero3", "DEEPSPEED"),
    ],
)
def test_generated_accelerate_configs_load_in_accelerate(tmp_path, mode, expected):
    from accelerate.commands.config.config_args import ClusterConfig

    recipe = _recipe(f"  num_processes: 4\n  distributed: {mode}\n", device="auto", cuda=True)
    plan = plan_launch(recipe)
    assert "--multi_gpu" not in plan.argv and set(plan.env) == {"LLMSCISCI_ORIGIN"}
    path = tmp_path / "accelerate_config.yaml"
    path.write_text(yaml.safe_dump(plan.accelerate_config))
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type.value == expected and config.num_processes == 4
    assert config.mixed_precision == "bf16"
    if mode.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(mode[-1])


def test_fsdp_on_cpu_is_refused():
    with pytest.raises(UserError, match="fsdp needs CUDA"):
        _recipe("  num_processes: 2\n  distributed: fsdp\n")  # device: cpu, at load time
    recipe = _recipe("  num_processes: 2\n  distributed: fsdp\n", device="auto").recipe
    assert machine_problems(recipe, cuda=False)
    assert machine_problems(recipe, cuda=True) == []
    with pytest.raises(UserError, match="fsdp needs CUDA"):
        refuse_machine_problems(
            machine_problems(recipe, cuda=False), "r.yaml"
        )  # before any model loads
    plain = _recipe("  num_processes: 2\n", device="auto").recipe
    assert machine_problems(plain, cuda=False) == []
