"""`llmscisci plan`: resolved recipe, compiled kwargs, launch command, machine problems."""

from __future__ import annotations

import json

import pytest

from llmscisci_cfg.train.plan import make_plan
from tests.conftest import RECIPES, all_recipes


@pytest.mark.parametrize("recipe", all_recipes(), ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_shipped_recipe_plans(cli, recipe):
    result = cli("plan", recipe)
    assert result.exit_code == 0, result.output
    if result.output.startswith("== predict"):  # a predict recipe: what predict would do
        assert (
            "llmscisci predict"
            in json.loads(cli("plan", recipe, "--json").output)["predict"]["command"]
        )
        return
    sections = ("== resolved recipe", "== trl.", "== launch", "== machine", "== data", "== memory")
    for section in sections:
        assert section in result.output
    result = cli("plan", recipe, "--json")
    data = json.loads(result.output)
    assert data["compiled"]["config_class"].startswith("trl.")
    assert "llmscisci" in data["command"] and data["run_dir"]


def test_plan_shows_changed_kwargs_and_command():
    plan = make_plan(
        "builtin:quickstart/grpo_tiny", ("launch.num_processes=2", "train.learning_rate=5e-4")
    )
    text = plan.as_text()
    assert "learning_rate: 0.0005" in text
    assert "use_cpu: True" in text and "bf16: False" in text
    assert (
        "weight_decay" not in text.split("== trl.GRPOConfig")[1].split("==")[0]
    )  # TRL default, hidden
    assert "--multi_gpu --num_processes 2" in plan.command
    assert plan.accelerate_config["num_processes"] == 2
    assert plan.compiled.derived["generation_batch_size"] == 16
    assert plan.machine_problems == []


def test_plan_reports_machine_problems_without_failing(tmp_path):
    recipe = tmp_path / "q.yaml"
    text = (RECIPES / "quickstart" / "sft_tiny.yaml").read_text()
    text = text.replace(
        "  dtype: float32\n", "  dtype: float32\n  lora: {r: 4}\n  quantization: {bits: 4}\n"
    )
    recipe.write_text(text.replace("device: cpu", "device: auto"))
    plan = make_plan(str(recipe))
    if plan.compiled.device == "cpu":
        assert any(
            "bitsandbytes quantization is refused on CPU" in p for p in plan.machine_problems
        )
    assert plan.compiled.bnb_kwargs["load_in_4bit"] is True


def test_plan_imports_plugins_and_checks_their_signature(cli, tmp_path):
    (tmp_path / "myrew.py").write_text(
        "def needs_col(completions, missing_column, **kwargs):\n    return [0.0] * len(completions)\n"
        "def fine(completions, gold, scale=1.0, **kwargs):\n    return [scale] * len(completions)\n"
    )
    text = (RECIPES / "quickstart" / "grpo_tiny.yaml").read_text()
    text = text.replace("  - name: format\n", "  - name: format\n  - name: myrew.py:needs_col\n")
    (tmp_path / "r.yaml").write_text(text)
    assert cli("validate", tmp_path / "r.yaml").exit_code == 0  # validate does not import plug-ins
    result = cli("plan", tmp_path / "r.yaml")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "rewards.1.name: myrew.py:needs_col: it needs 'missing_column'" in result.output
    (tmp_path / "r.yaml").write_text(text.replace("needs_col", "fine\n    params: {scale: 2.0}"))
    assert cli("plan", tmp_path / "r.yaml").exit_code == 0


GRPO, TINY = "builtin:quickstart/grpo_tiny", ("model.name_or_path=builtin:tiny",)


def test_plan_estimates_memory_and_compares_with_this_machine(monkeypatch):
    from llmscisci_cfg.train import memory

    cpu = make_plan(GRPO, (*TINY, "launch.device=cpu"), here=True)
    assert cpu.memory.estimate.settings.device == "cpu" and cpu.memory.device_total is None
    assert "peak memory ≈" in cpu.as_text() and "tensors in RAM, on CPU" in cpu.as_text()
    assert "this machine: the job runs on CPU" in cpu.as_text()
    gpu = (*TINY, "launch.device=cuda")
    plan = make_plan(GRPO, gpu)  # not step 1's output, which a clean clone lacks
    assert plan.memory.estimate is not None and plan.memory.device_total is None
    assert "peak GPU memory" in plan.as_text() and "this machine:" not in plan.as_text()
    monkeypatch.setattr(memory, "device_memory", lambda: None)
    assert "no CUDA device visible" in make_plan(GRPO, gpu, here=True).as_text()
    monkeypatch.setattr(memory, "device_memory", lambda: 80 * memory.GIB)
    here = make_plan(GRPO, gpu, here=True)
    assert here.memory.fits is True and "fits: ~" in here.as_text()
    assert here.as_dict()["memory"]["device_total_gib"] == 80
    monkeypatch.setattr(memory, "device_memory", lambda: memory.GIB // 4)
    small = make_plan(GRPO, gpu, here=True)
    assert small.memory.fits is False and "does NOT fit" in small.as_text()


def test_rollouts_by_vllm_are_not_this_estimate_s_generation(monkeypatch):
    """Colocated vLLM reserves a share of the whole GPU (counted once `--here` knows its size);
    a vLLM server generates elsewhere. Neither leaves a local KV cache to estimate."""
    from llmscisci_cfg.train import memory

    gpu = (*TINY, "launch.device=cuda", "generation.backend=vllm")
    colocated = make_plan(GRPO, gpu).memory
    assert colocated.estimate.get("generation") == 0 and colocated.estimate.get("vllm") == 0
    assert "colocated vLLM: 30% of the GPU; not counted" in colocated.as_text()
    monkeypatch.setattr(memory, "device_memory", lambda: 80 * memory.GIB)
    here = make_plan(GRPO, gpu, here=True).memory
    assert here.estimate.get("vllm") == round(0.3 * 80 * memory.GIB)
    assert here.estimate.total >= 24 * memory.GIB and "not counted" not in here.as_text()
    server = (*gpu, "generation.vllm_mode=server", "generation.base_url=http://127.0.0.1:8000")
    remote = make_plan(GRPO, server, here=True).memory.estimate
    assert remote.get("vllm") == 0 and remote.get("generation") == 0
    assert "vllm" not in remote.as_text()


def test_plan_notes_when_4bit_costs_more_than_it_saves(monkeypatch):
    from llmscisci_cfg.train import memory

    monkeypatch.setattr(memory, "device_memory", lambda: 141 * memory.GIB)
    text = make_plan("builtin:repro_effort/grpo_qwen2.5", here=True).as_text()
    assert "4-bit weights save only" in text and "model.quantization: null" in text
