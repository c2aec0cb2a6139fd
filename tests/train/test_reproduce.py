"""`llmscisci reproduce`: an identical re-run passes (exit 0); a tampered run fails with a diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmscisci_cfg.train.reproduce import compare_metrics
from llmscisci_cfg.train.runner import run
from tests.run_helpers import recipe_text, write_recipe

REPO = Path(__file__).resolve().parents[2]


def test_reproduce_identical_then_tampered(tmp_path, cli):
    run_dir = run(str(write_recipe(tmp_path, "sft")), (), tmp_path / "run")
    result = cli("reproduce", run_dir)
    assert result.exit_code == 0, result.output
    assert "reproduced: 3 metric rows identical" in result.output

    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["loss"] += 1e-6
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("reproduce", run_dir)
    assert result.exit_code == 3
    assert "NOT reproduced: 1 differences" in result.output
    assert "row 2 (step 2): loss:" in result.output

    record = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps(record | {"status": "interrupted"}))
    result = cli("reproduce", run_dir)
    assert result.exit_code == 2 and "did not complete (status: interrupted)" in result.output


def test_compare_ignores_wall_clock_only():
    a = [
        {
            "step": 1,
            "loss": 1.0,
            "train_runtime": 3.0,
            "train_samples_per_second": 1.0,
            "step_time": 0.5,
        }
    ]
    b = [
        {
            "step": 1,
            "loss": 1.0,
            "train_runtime": 9.0,
            "train_samples_per_second": 7.0,
            "step_time": 0.1,
        }
    ]
    assert compare_metrics(a, b) == []
    assert compare_metrics(a, [{"step": 1, "loss": 1.5}]) == ["row 1 (step 1): loss: 1.0 != 1.5"]
    assert compare_metrics(a, a + a) == ["row count: 1 != 2"]


def test_reproduce_says_which_input_changed_before_training(tmp_path, cli):
    """The same recipe on changed data is not a reproduction: exit 3 naming the input."""
    import shutil

    from llmscisci_cfg.resources import root

    data = tmp_path / "reports.csv"
    shutil.copy(root("assets") / "sample" / "reports.csv", data)
    recipe = write_recipe(tmp_path, "sft", steps=1)
    recipe.write_text(recipe.read_text().replace("builtin:sample", str(data)))
    run_dir = run(str(recipe), (), tmp_path / "run")
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:1] + lines[2:]))  # one row less
    result = cli("reproduce", run_dir)
    assert result.exit_code == 3, result.output
    assert f"input changed: data source ({data})" in result.output
    assert "re-running" not in result.output  # nothing was trained


PLUGIN = "def shout(completions, **kwargs):\n    return [1.0 for _ in completions]\n"


@pytest.mark.parametrize("changed", ["traces", "template", "reward", "task", "prompt"])
def test_every_recorded_input_is_compared(tmp_path, changed):
    """Traces, chat template, reward code, the task file and its prompts are checked like the
    data source (no training: a run directory holding what the runner records)."""
    import shutil

    from llmscisci_cfg.resources import root
    from llmscisci_cfg.runs import manifest
    from llmscisci_cfg.runs.rundir import RUN_FORMAT, RunDir
    from llmscisci_cfg.train.reproduce import changed_inputs

    traces, template, plugin = tmp_path / "t.jsonl", tmp_path / "chat.jinja", tmp_path / "p.py"
    task = tmp_path / "task.yaml"
    shutil.copy(root("assets") / "sample" / "traces.jsonl", traces)
    shutil.copy(REPO / "templates" / "tiny.jinja", template)
    shutil.copy(root("assets") / "tasks" / "repro_effort.yaml", task)
    plugin.write_text(PLUGIN)
    if changed == "reward":
        text = recipe_text("grpo").replace(
            "    weight: 0.5\n", f"    weight: 0.5\n  - name: {plugin}:shout\n"
        )
    else:
        text = recipe_text("sft", extra=f"template: {{file: {template}}}\n").replace(
            "  length_filter: null\n", f"  length_filter: null\n  traces: {{path: {traces}}}\n"
        )
    text = text.replace("data:\n", f"data:\n  task: {task}\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.resolved.yaml").write_text(text)
    (run_dir / "manifest.json").write_text(json.dumps({"format": RUN_FORMAT}))
    job = RunDir.open(run_dir).job()
    recorded = {
        "format": RUN_FORMAT,
        "status": "completed",
        "data": manifest.data_info(job),
        "template": {"sha256": job.template.sha256},
        "rewards": manifest.reward_info(job),
        "task": manifest.task_info(job),
    }
    (run_dir / "manifest.json").write_text(json.dumps(recorded))
    assert changed_inputs(RunDir.open(run_dir)) == []
    file = {"traces": traces, "template": template, "reward": plugin}.get(changed, task)
    if changed == "prompt":  # the user prompt's wording changes: the file and the prompt
        file.write_text(file.read_text().replace("Below is the", "Here is the"))
    else:
        with file.open("a") as f:
            f.write("\n")
    lines = changed_inputs(RunDir.open(run_dir))
    what = {"traces": "data traces", "template": "chat template", "reward": "reward "}
    what |= {"task": "task file", "prompt": "task file"}
    assert lines[0].startswith(f"input changed: {what[changed]}"), lines
    assert len(lines) == (2 if changed == "prompt" else 1), lines
    if changed == "prompt":
        assert lines[1].startswith("input changed: user prompt: sha256 ")
