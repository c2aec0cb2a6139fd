"""Tiny recipes and helpers for the runner tests (built-in tiny model, shipped sample data)."""

from __future__ import annotations

import json
from pathlib import Path

METHOD = {
    "sft": """
method:
  name: sft
  max_length: 256
""",
    "dpo": """
method:
  name: dpo
  beta: 0.1
  max_length: 256
""",
    "grpo": """
method:
  name: grpo
  num_generations: 2
  max_completion_length: 8
rewards:
  - name: format
  - name: stepwise_label
    weight: 0.5
""",
    "kto": """
method:
  name: kto
  answers: {easy: [easy_gpt_response, easy_llama3_response]}
  max_length: 256
""",
}
COLUMNS = {
    "sft": "    label: {easy: y_easy_gpt4}\n",
    "dpo": "    label: {easy: y_easy_gpt4}\n"
    "    chosen: {easy: easy_gpt_response}\n    rejected: {easy: easy_llama3_response}\n",
    "grpo": "    label: {easy: y_easy_gpt4}\n",
    "kto": "    label: {easy: y_easy_gpt4}\n",
}
LORA = """  lora:
    r: 4
    alpha: 8
    dropout: 0.0
"""


def recipe_text(method: str, lora: bool = False, steps: int = 2, extra: str = "") -> str:
    """A tiny recipe: builtin:tiny on the sample's `easy` aspect, ``steps`` optimizer steps."""
    return f"""
version: 1
name: t_{method}
model:
  name_or_path: builtin:tiny
  dtype: float32
{LORA if lora else ""}
data:
  source: {{path: builtin:sample}}
  aspects: [easy]
  columns:
    id: doi
{COLUMNS[method]}
  length_filter: null
{METHOD[method]}
train:
  per_device_batch_size: 2
  learning_rate: 1e-3
  max_steps: {steps}
  logging_steps: 1
  save_steps: 1
  save_total_limit: null
  seed: 3
launch:
  device: cpu
{extra}"""


def write_recipe(directory: Path, method: str, **kwargs) -> Path:
    path = directory / f"{method}.yaml"
    path.write_text(recipe_text(method, **kwargs), encoding="utf-8")
    return path


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def step_rows(run_dir: Path) -> list[dict]:
    """The per-step rows (not the end-of-training summary)."""
    return [r for r in metrics(run_dir) if "loss" in r]


def job_of(text: str, cuda: bool = False, run_dir=None, file: str = "<recipe>"):
    """A recipe text loaded and resolved as for a machine with (or without) CUDA."""
    from llmscisci_cfg.recipe.loader import load_recipe_text
    from llmscisci_cfg.recipe.resolve import resolve

    return resolve(load_recipe_text(text, file), cuda=cuda, run_dir=run_dir)


def sound_checkpoint(run_dir: Path, step: int) -> Path:
    """``checkpoints/checkpoint-STEP`` holding the two states a resume needs (no weights)."""
    path = run_dir / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    state = {
        "total_loss_scalar": 1.0,
        "tr_loss": 0.0,
        "globalstep_last_logged": step,
        "total_train_tokens": None,
    }
    (path / "llmscisci_state.json").write_text(json.dumps(state))
    return path


def our_manifest(**fields) -> str:
    """A manifest.json text of ours: the format marker and a run's inventory."""
    from llmscisci_cfg.runs.rundir import RUN_FORMAT, run_inventory

    return json.dumps({"format": RUN_FORMAT, "inventory": run_inventory()} | fields)
