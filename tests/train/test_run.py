"""`llmscisci run` end to end on builtin:tiny: each method, the run directory, refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.loader import load_recipe
from llmscisci_cfg.train.runner import run
from tests.run_helpers import metrics, step_rows, write_recipe

PLUGIN = '''
def length_reward(completions, **kwargs):
    """Longer completions score higher: gives GRPO groups a non-zero spread."""
    return [float(len(c[0]["content"] if isinstance(c, list) else c)) / 10 for c in completions]
'''


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


# ----------------------------------------------------------------------------- SFT + manifest


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("sft")
    mp = pytest.MonkeyPatch()
    mp.setenv("LLMSCISCI_CACHE", str(tmp_path_factory.getbasetemp() / "llmscisci-cache"))
    recipe = write_recipe(base, "sft")
    run_dir = run(str(recipe), ("train.learning_rate=2e-3",), base / "run")
    mp.undo()
    return recipe, run_dir


def test_sft_run_directory_is_complete(sft_run):
    _, run_dir = sft_run
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "manifest.json",
        "recipe.resolved.yaml",
        "metrics.jsonl",
        "checkpoints",
        "final",
        "plots",
    } <= names
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
    ]
    rows = step_rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] > 0 and r["learning_rate"] > 0 for r in rows)
    assert metrics(run_dir)[-1]["train_loss"] == pytest.approx(
        sum(r["loss"] for r in rows) / 2, rel=1e-6
    )
    assert (run_dir / "plots" / "loss.png").stat().st_size > 1000
    final = {p.name for p in (run_dir / "final").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= final


def test_sft_final_model_is_trained_and_carries_the_template(sft_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmscisci_cfg.models import tiny
    from llmscisci_cfg.recipe.loader import load_job

    recipe, run_dir = sft_run
    model = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    start = tiny.build_tiny_model("builtin:tiny", seed=3)
    trained, initial = model.state_dict(), start.state_dict()
    assert set(trained) == set(initial)
    assert any(not (trained[k] == initial[k]).all() for k in trained)
    tok = AutoTokenizer.from_pretrained(run_dir / "final")
    assert tok.chat_template == load_job(recipe).template.text


def test_manifest_contents(sft_run):
    from llmscisci_cfg.recipe.loader import load_job

    recipe_path, run_dir = sft_run
    m = json.loads((run_dir / "manifest.json").read_text())
    job = load_job(recipe_path, ("train.learning_rate=2e-3",))
    assert m["status"] == "completed"
    assert m["recipe"]["sha256"] == hashlib.sha256(recipe_path.read_bytes()).hexdigest()
    assert m["recipe"]["overrides"] == ["train.learning_rate=2e-3"]
    resolved_text = (run_dir / "recipe.resolved.yaml").read_text()
    assert m["recipe"]["resolved_sha256"] == hashlib.sha256(resolved_text.encode()).hexdigest()
    assert m["recipe"]["resolved"]["train"]["learning_rate"] == 2e-3
    assert set(m["versions"]) >= {
        "python",
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
        "bitsandbytes",
    }
    assert m["versions"]["trl"].startswith("1.16")
    source = Path(m["data"]["source"]["file"])
    assert source.name == "reports.csv" and m["data"]["source"]["path"] == "builtin:sample"
    assert m["data"]["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert m["template"]["sha256"] == hashlib.sha256(job.template.text.encode()).hexdigest()
    assert m["seed"] == 3 and m["device"] == "cpu"
    assert m["start_time"] <= m["end_time"]
    assert m["final"] == {
        "kind": "full",
        "base_model": "builtin:tiny",
        "base_seed": 3,
        "chat_template": "final/chat_template.jinja",
    }
    assert [p["world_size"] for p in m["processes"]] == [1]
    assert m["compiled"]["config_class"] == "trl.SFTConfig"
    assert m["data_report"]["splits"]["train"] > 0
    assert m["git"] == {"sha": None, "note": f"{recipe_path} is not in a git repository"}
    from llmscisci_cfg.runs.manifest import tool_info

    assert m["tool"] == tool_info() and m["tool"]["version"] == "0.1.0"
    assert m["tool"]["commit"] != "unknown"  # an editable install: the checkout's HEAD
    task_file = Path(m["task"]["file"])
    assert m["task"]["sha256"] == hashlib.sha256(task_file.read_bytes()).hexdigest()
    prompt_sha = hashlib.sha256(job.task.user_prompt.encode()).hexdigest()
    assert m["task"]["user_prompt_sha256"] == prompt_sha
    assert m["parent_model"] == {
        "name_or_path": "builtin:tiny",
        "kind": "builtin",
        "id": "builtin:tiny",
        "seed": 3,
    }
    assert m["inventory"][:2] == ["manifest.json", "recipe.resolved.yaml"]
    assert {"checkpoints/", "final/", "plots/loss.png"} <= set(m["inventory"])


def test_resolved_recipe_reloads_to_the_same_recipe(sft_run):
    recipe_path, run_dir = sft_run
    original = load_recipe(recipe_path, ("train.learning_rate=2e-3",))
    again = load_recipe(run_dir / "recipe.resolved.yaml")
    assert again.model_dump() == original.model_dump()
    assert yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())["train"]["seed"] == 3


# ----------------------------------------------------------------------------- refusals


def test_non_empty_run_dir_is_refused(tmp_path, cli):
    recipe = write_recipe(tmp_path, "sft")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty.*--overwrite"):
        run(str(recipe), (), busy)
    result = cli("run", recipe, "--output-dir", busy)
    assert (
        result.exit_code == 2 and "not empty" in result.output and "Traceback" not in result.output
    )
    assert (busy / "notes.txt").read_text() == "mine"
    result = cli("run", recipe, "--output-dir", busy, "--resume")
    assert result.exit_code == 2 and "no checkpoint" in result.output


def test_overwrite_replaces_only_run_directories(tmp_path, cli):
    """--overwrite replaces a run directory we wrote (a valid manifest of ours), never a folder
    that merely holds a file named manifest.json, and never deletes files we did not write."""
    recipe = write_recipe(tmp_path, "sft", steps=1)
    old = tmp_path / "old"
    assert cli("run", recipe, "--output-dir", old).exit_code == 0
    first = json.loads((old / "manifest.json").read_text())["start_time"]
    result = cli("run", recipe, "--output-dir", old, "--resume", "--overwrite")
    assert result.exit_code == 2 and "contradict" in result.output
    (old / "stale.txt").write_text("notes kept beside an earlier run")
    result = cli("run", recipe, "--output-dir", old, "--overwrite")
    assert result.exit_code == 2 and "did not write (stale.txt)" in result.output
    assert (old / "stale.txt").is_file() and (old / "final").is_dir()
    (old / "stale.txt").unlink()
    result = cli("run", recipe, "--output-dir", old, "--overwrite")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == f"run directory: {old}"
    m = json.loads((old / "manifest.json").read_text())
    assert m["status"] == "completed" and m["format"] == "llmscisci.run/1"
    assert m["start_time"] >= first
    for fake in ("{}", "[]", "garbage"):
        mine = tmp_path / "project"
        mine.mkdir(exist_ok=True)
        (mine / "manifest.json").write_text(fake)
        (mine / "src.txt").write_text("mine")
        result = cli("run", recipe, "--output-dir", mine, "--overwrite")
        assert result.exit_code == 2 and "not a run directory" in result.output
        assert (mine / "src.txt").read_text() == "mine" and (mine / "manifest.json").is_file()


def test_empty_train_split_is_a_user_error_and_writes_nothing(tmp_path, cli):
    import csv

    from llmscisci_cfg.resources import root

    with (root("assets") / "sample" / "reports.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:4]
    for row in rows:
        row["easy"] = row["difficult"] = ""
    data = tmp_path / "empty.csv"
    with data.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    recipe = write_recipe(tmp_path, "sft")
    recipe.write_text(recipe.read_text().replace("builtin:sample", str(data)))
    out = tmp_path / "run"
    result = cli("run", recipe, "--output-dir", out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the train split has no examples (4 source rows, 0 examples" in result.output
    assert not out.exists()  # nothing written: a fixed recipe runs into the same directory


def test_interrupt_marks_the_manifest_and_prints_how_to_resume(tmp_path, cli):
    (tmp_path / "stop.py").write_text(
        "CALLS = []\n"
        "def stop(completions, **kwargs):\n"
        "    CALLS.append(1)\n"
        "    if len(CALLS) == 2:\n"
        "        raise KeyboardInterrupt\n"
        "    return [0.0] * len(completions)\n"
    )
    recipe = write_recipe(tmp_path, "grpo", steps=3)
    recipe.write_text(
        recipe.read_text().replace(
            "  - name: format\n", "  - name: format\n  - name: stop.py:stop\n"
        )
    )
    out = tmp_path / "run"
    result = cli("run", recipe, "--output-dir", out)
    assert result.exit_code == 130
    assert f"continue with: llmscisci run {recipe} --output-dir {out} --resume" in result.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert [r["step"] for r in step_rows(out)] == [1]


def test_four_bit_is_refused_on_cpu_before_any_model_loads(tmp_path, cli):
    recipe = write_recipe(tmp_path, "sft", lora=True)
    text = recipe.read_text().replace(
        "  dtype: float32\n", "  dtype: float32\n  quantization: {bits: 4}\n"
    )
    recipe.write_text(text.replace("device: cpu", "device: auto"))
    result = cli("run", recipe, "--output-dir", tmp_path / "run")
    assert result.exit_code == 2
    assert "bitsandbytes quantization is refused on CPU" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("method", ["sft", "dpo", "grpo"])
def test_four_bit_runs_on_cpu_when_allowed(tmp_path, method):
    """bitsandbytes 0.50 quantizes on CPU; the recipe must opt in with allow_cpu."""
    recipe = write_recipe(tmp_path, method, lora=True, steps=1)
    quant = "  quantization: {bits: 4, allow_cpu: true, compute_dtype: float32}\n"
    recipe.write_text(
        recipe.read_text().replace("  dtype: float32\n", "  dtype: float32\n" + quant)
    )
    run_dir = run(str(recipe), (), tmp_path / "run")
    assert len(step_rows(run_dir)) == 1
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["compiled"]["bnb_kwargs"]["load_in_4bit"] is True
    assert m["final"]["kind"] == "adapter"
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()


# ----------------------------------------------------------------------------- methods


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_dpo_runs(tmp_path, lora):
    run_dir = run(str(write_recipe(tmp_path, "dpo", lora=lora)), (), tmp_path / "run")
    rows = step_rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    assert all("rewards/margins" in r and "logps/chosen" in r for r in rows)
    assert rows[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy == reference at start
    kind = json.loads((run_dir / "manifest.json").read_text())["final"]["kind"]
    assert kind == ("adapter" if lora else "full")
    assert (
        run_dir / "final" / ("adapter_model.safetensors" if lora else "model.safetensors")
    ).is_file()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_grpo_runs_and_logs_each_reward(tmp_path, lora):
    (tmp_path / "plug.py").write_text(PLUGIN)
    recipe = write_recipe(tmp_path, "grpo", lora=lora)
    text = recipe.read_text().replace(
        "  - name: format\n", "  - name: format\n  - name: plug.py:length_reward\n"
    )
    recipe.write_text(
        text.replace("max_completion_length: 8", "max_completion_length: 8\n  temperature: 1.5")
    )
    run_dir = run(str(recipe), (), tmp_path / "run")
    rows = step_rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    for name in ("format", "length_reward", "stepwise_label"):
        assert all(f"rewards/{name}/mean" in r and f"rewards/{name}/std" in r for r in rows)
    assert any(r["rewards/length_reward/std"] > 0 for r in rows)
    assert all(
        r["reward"]
        == pytest.approx(
            r["rewards/format/mean"]
            + r["rewards/length_reward/mean"]
            + 0.5 * r["rewards/stepwise_label/mean"],
            rel=1e-5,
        )
        for r in rows
    )
    assert (run_dir / "plots" / "rewards.png").is_file()
    m = json.loads((run_dir / "manifest.json").read_text())
    sources = {r["label"]: r["source"] for r in m["rewards"]}
    assert sources["length_reward"] == str(tmp_path / "plug.py")
    assert (
        m["rewards"][1]["sha256"] == hashlib.sha256((tmp_path / "plug.py").read_bytes()).hexdigest()
    )
    name = "adapter_model.safetensors" if lora else "model.safetensors"
    trained = _weights(run_dir / "final" / name)
    first = _weights(run_dir / "checkpoints" / "checkpoint-1" / name)
    assert any(not (trained[k] == first[k]).all() for k in trained)  # the second step moved weights


# ----------------------------------------------------------------------------- resume


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    """A run cut after checkpoint-2 (later checkpoints and final/ gone, metrics ahead) and resumed
    ends with exactly the uninterrupted run's metrics and weights."""
    import shutil

    from llmscisci_cfg.train.reproduce import compare_metrics

    recipe = write_recipe(tmp_path, "sft", steps=4)
    full = run(str(recipe), (), tmp_path / "full")
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for name in ("checkpoints/checkpoint-3", "checkpoints/checkpoint-4", "final", "plots"):
        shutil.rmtree(cut / name)
    record = json.loads((cut / "manifest.json").read_text())
    (cut / "manifest.json").write_text(json.dumps(record | {"status": "running", "end_time": None}))
    with pytest.raises(UserError, match="recipe differs"):
        run(str(recipe), ("train.learning_rate=1e-2",), cut, resume=True)
    run(str(recipe), (), cut, resume=True)
    assert compare_metrics(metrics(full), metrics(cut)) == []  # train_loss and num_tokens included
    assert [r["step"] for r in step_rows(cut)] == [1, 2, 3, 4]
    a, b = (
        _weights(full / "final" / "model.safetensors"),
        _weights(cut / "final" / "model.safetensors"),
    )
    assert all((a[k] == b[k]).all() for k in a)
    m = json.loads((cut / "manifest.json").read_text())
    assert m["resumed_from"].endswith("checkpoint-2") and m["status"] == "completed"
    assert [h["status"] for h in m["history"]] == ["running"]
    with pytest.raises(UserError, match="already completed"):
        run(str(recipe), (), cut, resume=True)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_grpo_with_a_kl_reference(tmp_path, lora):
    """beta > 0 needs a reference model: a reloaded copy of the start weights, or the adapter off."""
    recipe = write_recipe(tmp_path, "grpo", lora=lora, steps=1)
    recipe.write_text(
        recipe.read_text().replace("num_generations: 2", "num_generations: 2\n  beta: 0.04")
    )
    run_dir = run(str(recipe), (), tmp_path / "run")
    (row,) = step_rows(run_dir)
    assert row["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the first update
