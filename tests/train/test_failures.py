"""Runs that go wrong leave the user's files alone and end with exit 2 naming the cause
(issue 11, classes 1, 2, 8, 9, 11, 17); a run replaced by ``--overwrite`` comes back when
the new one fails before saving anything."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from tests.run_helpers import write_recipe


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A completed 2-step SFT run (full model) to copy and break."""
    import os

    from llmscisci_cfg.train.runner import run

    base = tmp_path_factory.mktemp("finished")
    os.environ.setdefault(
        "LLMSCISCI_CACHE", str(tmp_path_factory.getbasetemp() / "llmscisci-cache")
    )
    recipe = write_recipe(base, "sft")
    umask = os.umask(0o022)  # what most machines have: the modes test reads them
    try:
        return recipe, run(str(recipe), (), base / "run")
    finally:
        os.umask(umask)


def copy_run(finished, tmp_path):
    recipe, run_dir = finished
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return recipe, target


def test_overwrite_with_a_typo_keeps_the_finished_run(cli, finished, tmp_path):
    recipe, run_dir = copy_run(finished, tmp_path)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    result = cli(
        "run", recipe, "--output-dir", run_dir, "--overwrite",
        "--set", f"data.source.path={tmp_path / 'nonexistent.csv'}",
    )  # fmt: skip
    assert result.exit_code == 2 and "nonexistent.csv" in result.output
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"


def test_the_issue_reproduction_leaves_the_folder_alone(cli, tmp_path):
    recipe = write_recipe(tmp_path, "sft", steps=1)
    p = tmp_path / "p"
    (p / "src").mkdir(parents=True)
    (p / "manifest.json").write_text("{}")
    (p / "src" / "a").write_text("x")
    result = cli(
        "run", recipe, "--output-dir", p, "--overwrite",
        "--set", "data.source.path=/nonexistent.csv",
    )  # fmt: skip
    assert result.exit_code == 2
    assert (p / "src" / "a").read_text() == "x" and (p / "manifest.json").read_text() == "{}"


def test_a_full_disk_mid_run_is_exit_2_and_the_manifest_says_failed(cli, tmp_path, monkeypatch):
    from transformers import Trainer

    def full(self, output_dir=None, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", f"{output_dir}/model.safetensors")

    monkeypatch.setattr(Trainer, "save_model", full)
    recipe = write_recipe(tmp_path, "sft", steps=1)
    out = tmp_path / "run"
    result = cli("run", recipe, "--output-dir", out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{out}/checkpoints/checkpoint-1/model.safetensors: No space left on device" in (
        result.output
    )
    assert "its manifest says failed" in result.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


PLUGINS = {
    "raises": ("    raise KeyError('gold_x')\n", "raised KeyError: 'gold_x'"),
    "short": ("    return [1.0]\n", "returned 1 values; expected a list of 2 floats"),
    "text": (
        "    return ['high'] * len(completions)\n",
        "returned a value that is not a number: str 'high'",
    ),
    "exits": ("    import sys; sys.exit(3)\n", "called sys.exit(3)"),
}


@pytest.mark.parametrize("case", list(PLUGINS))
def test_a_failing_reward_plugin_stops_grpo_with_exit_2(cli, tmp_path, case):
    body, needle = PLUGINS[case]
    (tmp_path / "bad.py").write_text(f"def reward(completions, **kwargs):\n{body}")
    extra = "  - name: bad.py:reward\n"
    recipe = write_recipe(tmp_path, "grpo", steps=1)
    recipe.write_text(recipe.read_text().replace("    weight: 0.5\n", "    weight: 0.5\n" + extra))
    out = tmp_path / "run"
    result = cli("run", recipe, "--output-dir", out)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"reward 'reward' {needle}" in result.output
    assert "at step 0" in result.output and str(tmp_path / "bad.py") in result.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


def test_an_overwriting_run_that_fails_before_saving_gives_the_old_run_back(
    cli, finished, tmp_path
):
    _, run_dir = copy_run(finished, tmp_path)
    before = {p.relative_to(run_dir): p.stat().st_size for p in run_dir.rglob("*")}
    (tmp_path / "bad.py").write_text("def reward(completions, **kwargs):\n    raise KeyError(1)\n")
    recipe = write_recipe(tmp_path, "grpo", steps=1)
    text = recipe.read_text().replace(
        "    weight: 0.5\n", "    weight: 0.5\n  - name: bad.py:reward\n"
    )
    recipe.write_text(text)
    result = cli("run", recipe, "--output-dir", run_dir, "--overwrite")
    assert result.exit_code == 2, result.output
    assert "the run it replaced is back in its place" in result.output
    assert {p.relative_to(run_dir): p.stat().st_size for p in run_dir.rglob("*")} == before
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_an_overwriting_run_that_fails_after_a_checkpoint_keeps_the_new_run(
    cli, finished, tmp_path
):
    """The old run goes at the new run's first checkpoint; a later failure keeps the new run,
    which can be resumed."""
    _, run_dir = copy_run(finished, tmp_path)
    (tmp_path / "late.py").write_text(
        "calls = []\n"
        "def reward(completions, **kwargs):\n"
        "    calls.append(1)\n"
        "    if len(calls) > 1:\n"
        "        raise KeyError('late')\n"
        "    return [0.0] * len(completions)\n"
    )
    recipe = write_recipe(tmp_path, "grpo", steps=2)
    text = recipe.read_text().replace(
        "    weight: 0.5\n", "    weight: 0.5\n  - name: late.py:reward\n"
    )
    recipe.write_text(text)
    result = cli("run", recipe, "--output-dir", run_dir, "--overwrite")
    assert result.exit_code == 2 and "raised KeyError: 'late'" in result.output, result.output
    assert "is back in its place" not in result.output
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "failed"
    assert (run_dir / "checkpoints" / "checkpoint-1").is_dir() and not (run_dir / "final").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_an_overwriting_run_that_saves_replaces_the_old_run(cli, finished, tmp_path):
    recipe, run_dir = copy_run(finished, tmp_path)
    old_start = json.loads((run_dir / "manifest.json").read_text())["start_time"]
    result = cli("run", recipe, "--output-dir", run_dir, "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "manifest.json").read_text())["start_time"] != old_start
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_grpo_without_reward_signal_warns(cli, tmp_path):
    """An untrained tiny model never writes the format: every group scores 0, no signal."""
    recipe = write_recipe(tmp_path, "grpo", steps=2)
    text = recipe.read_text().replace("  - name: stepwise_label\n    weight: 0.5\n", "")
    recipe.write_text(text)
    result = cli("run", recipe, "--output-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "of the GRPO groups have zero reward variance" in result.output
    assert "warning: in 2 of 2 logged steps most GRPO groups had zero reward variance" in (
        result.output
    )


@pytest.mark.parametrize("damage", ["truncated weights", "bad config"])
def test_damaged_final_models_are_exit_2(cli, finished, tmp_path, damage):
    _, run_dir = copy_run(finished, tmp_path)
    final = run_dir / "final"
    if damage == "truncated weights":
        data = (final / "model.safetensors").read_bytes()
        (final / "model.safetensors").write_bytes(data[: len(data) // 3])
    else:
        (final / "config.json").write_text('{"model_type": "no-such-model"')
    for args in (("export", run_dir, "-o", tmp_path / "out"), ("eval", run_dir, "--limit", "1")):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "cannot load the" in result.output


def test_resume_repairs_a_torn_metrics_line(cli, finished, tmp_path):
    recipe, run_dir = copy_run(finished, tmp_path)
    record = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps(record | {"status": "interrupted"}))
    shutil.rmtree(run_dir / "final")
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-2")
    with (run_dir / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 2, "lo')  # what a kill mid-write leaves
    result = cli("run", recipe, "--output-dir", run_dir, "--resume")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]


def test_the_first_checkpoint_drops_the_replaced_run(tmp_path):
    from types import SimpleNamespace

    from llmscisci_cfg.train.callbacks import PreviousRunCallback

    run, aside = tmp_path / "run", tmp_path / ".run.previous"
    run.mkdir()
    aside.mkdir()
    callback = PreviousRunCallback(run)
    callback.on_save(None, SimpleNamespace(is_world_process_zero=False), None)
    assert aside.is_dir()  # only rank 0 touches the files
    callback.on_save(None, SimpleNamespace(is_world_process_zero=True), None)
    assert not aside.exists() and run.is_dir()


# ----------------------------------------------------------------------------- issue 21


def test_everything_the_run_wrote_is_readable_per_the_umask(finished):
    """Issue 21: final/model.safetensors and every checkpoint's weights were 0600 under umask
    022 (safetensors' own mode) while every other file was 0644."""
    _, run_dir = finished
    modes = {
        p.relative_to(run_dir).as_posix(): p.stat().st_mode & 0o777 for p in run_dir.rglob("*")
    }
    assert modes["final/model.safetensors"] == modes["checkpoints/checkpoint-1/model.safetensors"]
    odd = {p: m for p, m in modes.items() if m != (0o755 if (run_dir / p).is_dir() else 0o644)}
    assert odd == {}


def test_overwrite_keeps_the_users_files_in_eval_and_plots(cli, finished, tmp_path):
    """Issue 21: a finished run with the user's eval/notes.txt and plots/thesis.tex is refused
    (exit 2, naming them), and so is a folder whose manifest merely looks like ours."""
    recipe, run_dir = copy_run(finished, tmp_path)
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "notes.txt").write_text("my notes")
    (run_dir / "plots" / "thesis.tex").write_text("thesis")
    result = cli("run", recipe, "--output-dir", run_dir, "--overwrite")
    assert result.exit_code == 2, result.output
    assert "did not write (eval/, plots/thesis.tex)" in result.output
    assert "--output-dir" in result.output
    forged = tmp_path / "forged"
    shutil.copytree(run_dir, forged)
    record = json.loads((forged / "manifest.json").read_text())
    del record["inventory"]  # our keys and our format marker, but no inventory
    (forged / "manifest.json").write_text(json.dumps(record))
    result = cli("run", recipe, "--output-dir", forged, "--overwrite")
    assert result.exit_code == 2 and "lists no inventory" in result.output, result.output
    for folder in (run_dir, forged):
        assert (folder / "eval" / "notes.txt").read_text() == "my notes"
        assert (folder / "plots" / "thesis.tex").read_text() == "thesis"
        assert (folder / "final" / "model.safetensors").is_file()


def _interrupted_copy(finished, tmp_path):
    """A copy of the finished run as if killed after checkpoint-2 (final/ not yet written)."""
    recipe, run_dir = copy_run(finished, tmp_path)
    record = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps(record | {"status": "interrupted"}))
    shutil.rmtree(run_dir / "final")
    return recipe, run_dir


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


RESUME_DAMAGE = {
    "truncated weights": ("model.safetensors", _truncate),
    "corrupt resume state": ("llmscisci_state.json", lambda p: p.write_text('{"tr_loss": 1.')),
}


@pytest.mark.parametrize("damage", list(RESUME_DAMAGE))
def test_resume_falls_back_from_a_damaged_checkpoint(cli, finished, tmp_path, damage):
    """Issue 21: a truncated checkpoint (SafetensorError) or a corrupt llmscisci_state.json
    (JSONDecodeError) was a traceback; the resume now starts from the checkpoint before it."""
    recipe, run_dir = _interrupted_copy(finished, tmp_path)
    name, damage_it = RESUME_DAMAGE[damage]
    damage_it(run_dir / "checkpoints" / "checkpoint-2" / name)
    result = cli("run", recipe, "--output-dir", run_dir, "--resume")
    assert result.exit_code == 0, result.output
    assert (
        f"checkpoint-2: {name} " in result.output and "resuming from checkpoint-1" in result.output
    )
    assert "damaged-checkpoint-2" in result.output
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "completed" and m["resumed_from"].endswith("checkpoint-1")
    assert (run_dir / "checkpoints" / "damaged-checkpoint-2" / name).exists()
    assert (run_dir / "checkpoints" / "checkpoint-2" / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]


def test_resume_without_a_sound_checkpoint_is_exit_2_naming_the_files(cli, finished, tmp_path):
    recipe, run_dir = _interrupted_copy(finished, tmp_path)
    _truncate(run_dir / "checkpoints" / "checkpoint-2" / "model.safetensors")
    (run_dir / "checkpoints" / "checkpoint-1" / "llmscisci_state.json").write_text("{")
    result = cli("run", recipe, "--output-dir", run_dir, "--resume")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "no checkpoint can be resumed from" in result.output
    assert "checkpoint-2: model.safetensors does not read" in result.output
    assert "checkpoint-1: llmscisci_state.json does not read" in result.output
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir()  # nothing moved


def test_resume_with_a_damaged_resolved_recipe_is_exit_2_naming_it(cli, finished, tmp_path):
    recipe, run_dir = _interrupted_copy(finished, tmp_path)
    (run_dir / "recipe.resolved.yaml").write_text("name: [unclosed\n")
    result = cli("run", recipe, "--output-dir", run_dir, "--resume")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{run_dir / 'recipe.resolved.yaml'}: damaged" in result.output


def test_the_launch_staging_folder_is_emptied_only_of_what_we_staged(tmp_path):
    """The workers' inputs are staged in .NAME.launch beside the run: a leftover of ours goes,
    a user's folder of that name is refused, never emptied."""
    from llmscisci_cfg.errors import UserError
    from llmscisci_cfg.train.runner import _clear_staging

    staging = tmp_path / ".run.launch"
    staging.mkdir()
    (staging / "recipe.resolved.yaml").write_text("name: x\n")
    (staging / ".accelerate_config.yaml.ab12cd34.tmp").write_text("")
    _clear_staging(staging)
    assert not staging.exists()
    staging.mkdir()
    (staging / "recipe.resolved.yaml").write_text("name: x\n")
    (staging / "mine.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds other things \(mine.txt\)"):
        _clear_staging(staging)
    _clear_staging(staging, strict=False)  # after a run: left as it is
    assert sorted(p.name for p in staging.iterdir()) == ["mine.txt", "recipe.resolved.yaml"]
