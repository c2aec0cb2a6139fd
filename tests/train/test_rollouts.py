"""GRPO rollouts through the generation engine (`llmscisci_cfg.train.rollouts`)."""

from __future__ import annotations

import pytest

from llmscisci_cfg.train.compile import compile_recipe
from tests.run_helpers import job_of, recipe_text, step_rows, write_recipe


@pytest.mark.parametrize(
    ("extra", "cuda", "engine"),
    [
        ("", False, False),  # CPU, compile auto: TRL's generate
        ("", True, True),  # CUDA, bf16 weights: the engine, compiled
        ("generation: {compile: off}\n", True, False),
        ("generation: {compile: on}\n", False, True),  # `on` is taken as the word, not a bool
        ("generation: {continuous_batching: true}\n", True, False),
        ("model:\n  quantization: {bits: 4}\n", True, False),  # bitsandbytes does not compile
        ("model+merged", True, True),  # ... but its merged copy does
        ("launch: {distributed: fsdp, num_processes: 2}\n", True, False),  # sharded weights
    ],
)
def test_which_generator_runs_the_rollouts(extra, cuda, engine):
    text = recipe_text("grpo")
    if extra.startswith("model"):
        text = text.replace(
            "  dtype: float32\n", "  dtype: float32\n  quantization: {bits: 4}\n  lora: {r: 4}\n"
        )
        extra = "generation: {rollout_weights: merged}\n" if extra == "model+merged" else ""
    if extra.startswith("launch:"):
        text = text.replace(
            "launch:\n  device: cpu\n",
            "launch:\n  device: cpu\n  distributed: fsdp\n  num_processes: 2\n",
        )
        extra = ""
    if cuda:
        text = text.replace("device: cpu", "device: cuda")
    c = compile_recipe(job_of(text + extra, cuda=cuda))
    assert c.engine_rollouts is engine
    assert ("llmscisci engine" in c.derived["rollouts"]) is engine
    assert c.merged_rollouts is ("merged" in extra)
    assert ("merged copy" in c.derived["rollouts"]) is ("merged" in extra)


@pytest.fixture
def seen(monkeypatch) -> dict:
    """``seen["trainer"]``: the trainer `run` builds (captured as `build_trainer` returns)."""
    import llmscisci_cfg.train.build as build

    captured: dict = {}
    real = build.build_trainer

    def capture(*args, **kwargs):
        built = real(*args, **kwargs)
        captured["trainer"], captured["report"] = built.trainer, built.data_report
        return built

    monkeypatch.setattr(build, "build_trainer", capture)
    return captured


def test_continuous_batching_gets_a_cache_sized_for_the_rollouts(tmp_path, seen):
    """Left to TRL, transformers' paged cache takes half of the free memory (on this machine
    11 GiB of RAM for the tiny model); sized for the rollouts (every request at once, a page
    more each) the whole run peaks under 1 GiB of tensors, and `plan`'s estimate follows."""
    from bench.gpu import memory_figures
    from bench.tensor_peak import TensorPeak
    from llmscisci_cfg.train.methods.grpo import CB_PAGE_SIZE, continuous_batching_config
    from llmscisci_cfg.train.runner import run

    path = write_recipe(
        tmp_path, "grpo", steps=2, extra="generation: {continuous_batching: true}\n"
    )
    with TensorPeak() as peak:
        run_dir = run(str(path), (), tmp_path / "run")
    args, lengths = seen["trainer"].args, seen["report"].token_lengths
    assert args.use_transformers_continuous_batching
    assert lengths["prompt_any"] >= lengths["prompt"] > 0  # the test split's prompts too
    rows = args.per_device_train_batch_size * args.steps_per_generation
    config = args.transformers_continuous_batching_config
    expected = continuous_batching_config(rows, lengths["prompt_any"], args.max_completion_length)
    assert config == expected and config["page_size"] == CB_PAGE_SIZE
    assert peak.peak_bytes < 2**30, peak.peak_bytes
    assert len(step_rows(run_dir)) == 2
    figures = memory_figures(path, peak.peak_bytes / 2**30)
    assert abs(figures["mem_estimate_error"]) <= 0.2, figures


def test_grpo_trains_with_engine_rollouts(tmp_path, seen):
    from llmscisci_cfg.train.runner import run

    path = write_recipe(tmp_path, "grpo", steps=2)
    run_dir = run(str(path), ("generation.compile=on",), tmp_path / "run")
    trainer = seen["trainer"]
    assert type(trainer).__name__ == "EngineRolloutGRPOTrainer"
    stats = trainer._rollout_engine.stats
    # 2 steps x 2 completions per step (batch 2), each up to max_completion_length 8
    assert stats.rows == 4 and 0 < stats.completion_tokens <= 4 * 8
    rows = step_rows(run_dir)
    assert len(rows) == 2 and all(r["completions/mean_length"] > 0 for r in rows)
    assert trainer.model.training  # back in train mode after sampling
    sampling = trainer._rollout_sampling()  # TRL's own sampling settings, none left to defaults
    assert (sampling.top_k, sampling.min_p, sampling.repetition_penalty) == (
        trainer.top_k,
        trainer.min_p,
        trainer.repetition_penalty,
    )
    assert sampling.temperature == trainer.temperature and sampling.max_new_tokens == 8


@pytest.mark.parametrize(
    ("method", "lora", "setting", "needle"),
    [
        ("sft", True, "", "merged is for GRPO's rollouts"),
        ("grpo", False, "", "needs model.lora"),
        ("grpo", True, ", continuous_batching: true", "without continuous_batching"),
        ("grpo", True, ", compile: off", "with compile: off set policy"),
    ],
)
def test_merged_rollouts_are_refused_where_they_would_be_ignored(
    cli, tmp_path, method, lora, setting, needle
):
    text = recipe_text(method, lora=lora)
    path = tmp_path / "r.yaml"
    path.write_text(text + f"generation: {{rollout_weights: merged{setting}}}\n")
    result = cli("validate", path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "generation.rollout_weights" in result.output and needle in result.output


def test_merged_rollouts_without_cuda_need_compile_on():
    """compile: auto compiles on CUDA only; on CPU the copy would be built for nothing."""
    from llmscisci_cfg.recipe.checks import machine_problems
    from llmscisci_cfg.train.memory import settings_for

    text = recipe_text("grpo", lora=True) + "generation: {rollout_weights: merged}\n"
    job = job_of(text)
    (problem,) = [p for p in machine_problems(job.recipe, cuda=False) if "merged" in str(p)]
    assert "compile: on" in str(problem)
    assert not [p for p in machine_problems(job.recipe, cuda=True) if "merged" in str(p)]
    assert not settings_for(compile_recipe(job)).merged_rollouts  # nor in the estimate
    on = job_of(text.replace("rollout_weights: merged", "rollout_weights: merged, compile: on"))
    assert not machine_problems(on.recipe, cuda=False)
    assert settings_for(compile_recipe(on)).merged_rollouts


def test_grpo_trains_with_merged_rollouts(tmp_path, seen):
    """The engine decodes the merged copy, refreshed (not rebuilt) before each generation
    round, so it computes what the policy computes at that moment."""
    import torch

    from llmscisci_cfg.train.runner import run

    path = write_recipe(tmp_path, "grpo", lora=True, steps=2)
    sets = ("generation.compile=on", "generation.rollout_weights=merged")
    run(str(path), sets, tmp_path / "run")
    trainer = seen["trainer"]
    copy = trainer._merged_copy
    assert copy is not None and trainer._rollout_engine.model is copy.model
    assert trainer._rollout_engine.stats.rows == 4
    policy = copy.policy.eval()

    def gap():
        ids = torch.tensor([[5, 17, 40, 8, 93, 21]])
        with torch.no_grad():
            return (copy.model(ids).logits - policy(ids).logits).abs().max()

    copy.refresh()  # the last optimizer step came after the last rollout
    assert gap() < 1e-5
    for name, param in policy.named_parameters():  # as an optimizer step would
        if "lora_B" in name:
            param.data.add_(0.05)
    assert gap() > 1e-3
    assert trainer._sampler(policy) is copy.model and gap() < 1e-5  # the next round refreshes
    assert trainer._merged_copy is copy  # not rebuilt


def test_grpo_rewards_apply_the_task_label_constraints_when_asked(tmp_path):
    """The trainer's rewards score the research's way (every valid one-hot) unless a reward
    asks for the task's constraints (``constrained: true``), which decoding always keeps."""
    from llmscisci_cfg.train.build import make_rewards
    from tests.data_helpers import constrained_task

    task = constrained_task(tmp_path)  # exclusive: [5], min_positive: 1
    text = recipe_text("grpo").replace(
        "  aspects: [easy]\n", f"  task: {task}\n  aspects: [easy]\n"
    )
    strict = text.replace(
        "  - name: stepwise_label\n", "  - name: stepwise_label\n    params: {constrained: true}\n"
    )
    bad = [
        "<think>x</think><label>[1, 0, 0, 0, 1]</label>",
        "<think>x</think><label>[0, 0, 0, 0, 0]</label>",
    ]
    good = ["<think>x</think><label>[1, 0, 0, 0, 0]</label>"]
    gold = [[1, 0, 0, 0, 0]] * 3
    for recipe, expected in ((text, [1.0, 1.0, 1.0]), (strict, [0.375, 0.375, 1.0])):
        (format_reward, stepwise) = make_rewards(job_of(recipe), None, ["prompt", "gold", "aspect"])
        assert stepwise(completions=bad + good, gold=gold, aspect=["easy"] * 3) == expected
    assert format_reward(completions=bad + good) == [1.0, 1.0, 1.0]  # the format is still fine
