"""Slow runner tests: SIGKILL then --resume, and real 2-rank CPU DDP through accelerate."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest

from llmscisci_cfg.train.reproduce import compare_metrics
from tests.conftest import REPO
from tests.run_helpers import metrics, step_rows, write_recipe

pytestmark = pytest.mark.slow

KILLER = '''
import os
import signal

CALLS = {"n": 0}


def length_reward(completions, **kwargs):
    """Scores length; with KILL_AT_CALL=k it SIGKILLs its own process on the k-th call."""
    CALLS["n"] += 1
    if os.environ.get("KILL_AT_CALL") == str(CALLS["n"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return [float(len(c[0]["content"] if isinstance(c, list) else c)) / 10 for c in completions]
'''


def _llmscisci(*args, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "llmscisci_cfg", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
    )


def _grpo_recipe(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    recipe = write_recipe(tmp_path, "grpo", steps=4)
    text = recipe.read_text().replace(
        "  - name: format\n", "  - name: format\n  - name: killer.py:length_reward\n"
    )
    recipe.write_text(
        text.replace("max_completion_length: 8", "max_completion_length: 8\n  temperature: 1.5")
    )
    return recipe


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    recipe = _grpo_recipe(tmp_path)
    full = tmp_path / "full"
    assert _llmscisci("run", recipe, "--output-dir", full).returncode == 0
    killed = tmp_path / "killed"
    result = _llmscisci("run", recipe, "--output-dir", killed, env={"KILL_AT_CALL": "3"})
    assert result.returncode == -signal.SIGKILL
    assert (killed / "checkpoints" / "checkpoint-2").is_dir() and not (killed / "final").exists()
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"
    result = _llmscisci("run", recipe, "--output-dir", killed, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"run directory: {killed}"
    assert [r["step"] for r in step_rows(killed)] == [1, 2, 3, 4]
    assert compare_metrics(metrics(full), metrics(killed)) == []
    assert any(r["rewards/length_reward/std"] > 0 for r in step_rows(full))


def test_two_rank_cpu_ddp_really_runs_two_ranks(tmp_path):
    recipe = write_recipe(tmp_path, "sft", steps=2)
    out = tmp_path / "ddp"
    result = _llmscisci("run", recipe, "--set", "launch.num_processes=2", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"run directory: {out}"
    assert sum(line.startswith("run directory:") for line in lines) == 1
    status = result.stderr.splitlines()  # status lines go to stderr, the run directory to stdout
    launch = next(line for line in status if line.startswith("launch: "))
    assert (
        "ACCELERATE_USE_CPU=true" in launch
        and "--multi_gpu" in launch
        and "--num_processes 2" in launch
    )
    # the workers start from the run's resolved recipe; the manifest keeps the user's command
    assert f"run {tmp_path / '.ddp.launch' / 'recipe.resolved.yaml'} --output-dir {out}" in launch
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "completed"
    assert m["recipe"]["ref"] == str(recipe)
    assert m["recipe"]["overrides"] == ["launch.num_processes=2"]
    assert m["command"].startswith(f"llmscisci run {recipe} --set=launch.num_processes=2")
    procs = m["processes"]
    assert [p["rank"] for p in procs] == [0, 1]
    assert all(p["world_size"] == 2 for p in procs)
    assert len({p["pid"] for p in procs}) == 2
    assert (out / "accelerate_config.yaml").is_file()
    rows = step_rows(out)
    assert [r["step"] for r in rows] == [1, 2]  # rank 0 alone wrote metrics: one row per step
    # each rank reads its half of the train split in batches of 2: an epoch is ceil(n / 4) steps
    n = m["data_report"]["splits"]["train"]
    assert rows[0]["epoch"] == pytest.approx(1 / math.ceil(n / 4))


def test_two_rank_cpu_ddp_grpo_with_merged_rollouts(tmp_path):
    """Each rank builds its own merged copy from its unwrapped policy and decodes through it."""
    recipe = write_recipe(tmp_path, "grpo", lora=True, steps=2)
    out = tmp_path / "ddp"
    sets = ["launch.num_processes=2", "generation.compile=on", "generation.rollout_weights=merged"]
    args = [a for s in sets for a in ("--set", s)]
    result = _llmscisci("run", recipe, *args, "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "completed" and len(m["processes"]) == 2
    assert m["compiled"]["merged_rollouts"] is True
    assert "merged copy" in m["compiled"]["derived"]["rollouts"]
    rows = step_rows(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["completions/mean_length"] > 0 for r in rows)
