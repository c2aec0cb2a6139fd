"""Parity with hand-written TRL: the same tiny SFT and GRPO jobs, through llmscisci and directly.

The direct path is the script a TRL user would write: ``SFTConfig`` / ``GRPOConfig`` with
literal kwargs, the model, the tokenizer and the reward functions passed by hand. Both paths
read the same built dataset and the same seeded tiny model, so any difference in what TRL
receives shows up as a different loss. Losses (and grad norms) must be identical; the
``train()`` wall time of each path is measured interleaved (ABBA, after a discarded warm-up
pair) in one single-threaded process, and the ratio of medians is reported (goal ≤ 1.03).

Run: ``PYTHONPATH=. python -m bench.bench_runner [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

SEED = 0
COMMON = """
version: 1
name: parity_{method}
model: {{name_or_path: builtin:tiny, dtype: float32}}
data:
  source: {{path: builtin:sample}}
  columns: {{id: doi, label: {{easy: y_easy_gpt4, difficult: y_diff_gpt4}}}}
  length_filter: null
train:
  per_device_batch_size: {batch}
  learning_rate: {lr}
  max_steps: {steps}
  lr_scheduler: constant
  logging_steps: 1
  save_steps: {steps}
  seed: 0
launch: {{device: cpu}}
"""
SFT_JOB = {"batch": 4, "lr": 3e-3, "steps": 40}
GRPO_JOB = {"batch": 8, "lr": 1e-3, "steps": 12}
SFT = (
    COMMON.format(method="sft", **SFT_JOB)
    + """
method: {name: sft, max_length: 256}
"""
)
PLUGIN = Path(__file__).resolve().parent / "parity_rewards.py"
GRPO = (
    COMMON.format(method="grpo", **GRPO_JOB)
    + f"""
method: {{name: grpo, num_generations: 4, max_completion_length: 24}}
rewards:
  - name: format
  - name: stepwise_label
  - name: {PLUGIN}:completion_chars
"""
)


def _common_kwargs(out: Path, batch: int, lr: float, steps: int) -> dict:
    """What a careful TRL user writes for a CPU run (TRL's bf16 and checkpointing defaults off)."""
    return dict(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=batch,
        learning_rate=lr,
        max_steps=steps,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="steps",
        save_steps=steps,
        seed=SEED,
        data_seed=SEED,
        report_to="none",
        optim="adamw_torch",
        activation_checkpointing=False,
        use_cpu=True,
        bf16=False,
        disable_tqdm=False,
        save_total_limit=2,
    )


def _inputs(recipe_text: str):
    from llmscisci_cfg.data.preprocess import build_dataset
    from llmscisci_cfg.recipe.loader import load_recipe_text
    from llmscisci_cfg.recipe.resolve import resolve
    from llmscisci_cfg.train import methods

    job = resolve(load_recipe_text(recipe_text))
    tokenizer = job.tokenizer()
    return tokenizer, build_dataset(job, methods.get(job.method), tokenizer=tokenizer)[0]["train"]


def direct_sft(out: Path) -> tuple[list[dict], float]:
    """The hand-written SFT script; returns (per-step logs, train() seconds)."""
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from llmscisci_cfg.models.tiny import build_tiny_model

    tokenizer, train = _inputs(SFT)
    set_seed(SEED)
    args = SFTConfig(**_common_kwargs(out, **SFT_JOB), max_length=256, assistant_only_loss=True)
    trainer = SFTTrainer(
        model=build_tiny_model("builtin:tiny", SEED),
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
    )
    return _train(trainer)


def direct_grpo(out: Path) -> tuple[list[dict], float]:
    """The hand-written GRPO script: two built-in rewards and the plug-in one, weights 1."""
    from transformers import set_seed
    from trl import GRPOConfig, GRPOTrainer

    from bench.parity_rewards import completion_chars
    from llmscisci_cfg.models.tiny import build_tiny_model
    from llmscisci_cfg.rewards import builtin
    from llmscisci_cfg.task.kinds import MultiLabel

    def format(completions, **kwargs):  # noqa: A001 - the name TRL logs
        return builtin.format_reward(completions)

    def stepwise_label(completions, **kwargs):
        return builtin.stepwise_label(completions, label_kind=MultiLabel.plain(5), **kwargs)

    tokenizer, train = _inputs(GRPO)
    set_seed(SEED)
    args = GRPOConfig(
        **_common_kwargs(out, **GRPO_JOB),
        num_generations=4,
        max_completion_length=24,
        reward_weights=[1.0, 1.0, 1.0],
    )
    trainer = GRPOTrainer(
        model=build_tiny_model("builtin:tiny", SEED),
        reward_funcs=[format, stepwise_label, completion_chars],
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
    )
    return _train(trainer)


def _train(trainer) -> tuple[list[dict], float]:
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return [row for row in trainer.state.log_history if "loss" in row], seconds


def via_llmscisci(recipe_text: str, out: Path) -> tuple[list[dict], float]:
    """``llmscisci run`` in-process; returns (per-step metrics rows, train() seconds)."""
    from llmscisci_cfg.train.runner import run

    recipe = out.parent / f"{out.name}.yaml"
    recipe.write_text(recipe_text, encoding="utf-8")
    run_dir = run(str(recipe), (), out)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seconds = json.loads((run_dir / "manifest.json").read_text())["train_seconds"]
    return [r for r in rows if "loss" in r], seconds


def same_losses(ours: list[dict], theirs: list[dict]) -> bool:
    key = [(r["step"], r["loss"], r["grad_norm"]) for r in ours]
    return key == [(r["step"], r["loss"], r["grad_norm"]) for r in theirs] and bool(key)


def compare(method: str, repeats: int, scratch: Path, warmup: bool = True) -> dict:
    """Interleaved ABBA runs of both paths (after one discarded warm-up pair); identical losses
    asserted on every pair."""
    recipe, direct = {"sft": (SFT, direct_sft), "grpo": (GRPO, direct_grpo)}[method]
    ours_t, theirs_t, losses = [], [], None
    for i in range(-1 if warmup else 0, repeats):
        order = ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")
        got = {}
        for who in order:
            out = scratch / f"{method}-{who}-{i}"
            got[who] = via_llmscisci(recipe, out) if who == "ours" else direct(out)
        if not same_losses(got["ours"][0], got["theirs"][0]):
            raise AssertionError(
                f"{method}: losses differ\nours:   {got['ours'][0]}\ntheirs: {got['theirs'][0]}"
            )
        if i >= 0:
            ours_t.append(got["ours"][1])
            theirs_t.append(got["theirs"][1])
        losses = [r["loss"] for r in got["ours"][0]]
    ours, theirs = statistics.median(ours_t), statistics.median(theirs_t)
    return {
        f"train_overhead_ratio_{method}": round(ours / theirs, 3),
        f"train_seconds_{method}_llmscisci": round(ours, 3),
        f"train_seconds_{method}_direct_trl": round(theirs, 3),
        f"losses_identical_{method}": True,
        f"max_abs_loss_{method}": max(abs(x) for x in losses),
    }


def run(repeats: int = 5) -> dict:
    """Both jobs; the figures `python -m bench` records.

    Torch runs single-threaded here: on a shared 2-core machine, OpenMP threads spinning
    against other processes inflate both paths by up to 20x and drown the comparison.
    """
    import os

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        scratch = Path(tmp)
        os.environ.setdefault("LLMSCISCI_CACHE", str(scratch / "cache"))
        figures = {}
        for method in ("sft", "grpo"):
            figures |= compare(method, repeats, scratch)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    print(json.dumps(run(parser.parse_args().repeats), indent=2))
