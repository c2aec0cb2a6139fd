"""Compile a `Job` into what TRL receives: config kwargs, LoRA, quantization, model kwargs.

`compile_recipe` looks the method up (`train.methods.get`): the training kwargs every method
shares (`training_kwargs`, the recipe's train section) plus the method's own
(`TrainingMethod.config_kwargs`), its config and trainer class. Light: no
torch/trl/transformers import, so `llmscisci plan` shows exactly what `run` will pass to
``trl.SFTConfig(**config_kwargs)`` (and friends) without loading any ML library.
Every key written here is checked against TRL 1.16's config classes by a test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.models.load import bnb_kwargs, model_kwargs
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.train import methods

# TRL 1.16 defaults of the keys we set (a test checks this table against the real classes);
# `plan` shows the kwargs that differ from them, plus KEY_FIELDS.
_COMMON_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "optim": "adamw_torch_fused",
    "logging_strategy": "steps",
    "logging_steps": 10,
    "save_strategy": "steps",
    "save_steps": 500,
    "save_total_limit": None,
    "eval_strategy": "no",
    "eval_steps": None,
    "seed": 42,
    "data_seed": None,
    "report_to": "none",
    "run_name": None,
    "activation_checkpointing": None,
    "activation_checkpointing_kwargs": None,
    "use_cpu": False,
    "bf16": None,
    "fp16": False,
    "disable_tqdm": None,
    "dataloader_num_workers": 0,
    "ddp_find_unused_parameters": None,
    "use_liger_kernel": False,
    "torch_compile": False,
}
#: Each method's TRL config class → TRL 1.16's defaults of the keys compile sets (the method's
#: own from its descriptor, `methods.TrainingMethod.trl_defaults`).
TRL_DEFAULTS: dict[str, dict[str, Any]] = {
    m.config_class: _COMMON_DEFAULTS | dict(m.trl_defaults) for m in methods.REGISTRY.values()
}
KEY_FIELDS = ("output_dir", "learning_rate", "per_device_train_batch_size", "max_steps", "seed")


@dataclass(frozen=True)
class Compiled:
    """Everything `build` turns into TRL objects, as plain data."""

    method: str
    device: str
    config_class: str
    trainer_class: str
    config_kwargs: dict[str, Any]
    model_kwargs: dict[str, Any]
    lora_kwargs: dict[str, Any] | None = None
    bnb_kwargs: dict[str, Any] | None = None
    reward_names: list[str] = field(default_factory=list)
    reward_weights: list[float] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)
    #: GRPO rollouts through our engine (static cache, compiled decode step on CUDA)
    engine_rollouts: bool = False
    #: ... decoding a merged copy of base + LoRA (`llmscisci_cfg.models.merged`)
    merged_rollouts: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def changed_kwargs(self) -> dict[str, Any]:
        """Config kwargs that differ from TRL's defaults, plus the `KEY_FIELDS`."""
        defaults = TRL_DEFAULTS[self.config_class]
        return {
            k: v
            for k, v in self.config_kwargs.items()
            if k in KEY_FIELDS or k not in defaults or defaults[k] != v
        }


def compile_recipe(job: Job) -> Compiled:
    """Compile the job's recipe for its device and run directory (a predict recipe, which
    trains nothing, is a `UserError`)."""
    recipe, device = job.recipe, job.device
    method = methods.get(job.method)
    rewards = (recipe.rewards or []) if method.rewards else []
    return Compiled(
        method=method.name,
        device=device,
        config_class=method.config_class,
        trainer_class=method.trainer_class,
        config_kwargs=training_kwargs(recipe, device, job.run_dir)
        | method.config_kwargs(recipe, device),
        model_kwargs=model_kwargs(recipe.model, device),
        lora_kwargs=lora_kwargs(recipe),
        bnb_kwargs=bnb_kwargs(recipe.model),
        reward_names=[r.label for r in rewards],
        reward_weights=[float(r.weight) for r in rewards],
        **(method.extras(recipe, device) if method.extras else {}),
    )


# ----------------------------------------------------------------------------- shared pieces


def mixed_precision(recipe: Recipe, device: str) -> str:
    """``bf16``, ``fp16`` or ``no``: 'auto' is bf16 on CUDA and off on CPU."""
    mp = recipe.launch.mixed_precision
    if mp == "auto":
        return "bf16" if device == "cuda" else "no"
    return mp


def training_kwargs(recipe: Recipe, device: str, run_dir: Path) -> dict[str, Any]:
    """`transformers.TrainingArguments` fields every method shares (the recipe's train section)."""
    t = recipe.train
    mp = mixed_precision(recipe, device)
    return {
        "output_dir": str(Path(run_dir) / "checkpoints"),
        "run_name": recipe.name,
        "per_device_train_batch_size": t.per_device_batch_size,
        "per_device_eval_batch_size": t.per_device_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "num_train_epochs": float(t.num_epochs),
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_ratio,  # transformers 5 reads a float in [0, 1) as a ratio
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "optim": t.optim,
        "logging_strategy": "steps",
        "logging_steps": t.logging_steps,
        "save_strategy": "steps" if t.save_steps else "epoch",
        "save_steps": t.save_steps if t.save_steps else 500,
        "save_total_limit": t.save_total_limit,
        "eval_strategy": "steps" if t.eval_steps else "no",
        "eval_steps": t.eval_steps,
        "seed": t.seed,
        "data_seed": t.seed,
        "report_to": [r for r in t.report_to if r != "none"] or "none",
        # transformers 5's name for gradient checkpointing; TRL turns it on by default, the recipe decides
        "activation_checkpointing": t.gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False}
        if t.gradient_checkpointing
        else None,
        "use_cpu": device == "cpu",
        "bf16": mp == "bf16",  # TRL turns bf16 on by default, which fails on CPU
        "fp16": mp == "fp16",
        "disable_tqdm": False,  # transformers' bar, shown only with --verbose
        "dataloader_num_workers": 0,
        # every trained parameter takes part in each forward; skip DDP's extra graph walk
        "ddp_find_unused_parameters": False if recipe.launch.num_processes > 1 else None,
        "use_liger_kernel": t.liger_kernel,
        "torch_compile": t.torch_compile,
    }


def lora_kwargs(recipe: Recipe) -> dict[str, Any] | None:
    """`peft.LoraConfig` kwargs, or None for full fine-tuning."""
    lora = recipe.model.lora
    if lora is None:
        return None
    return {
        "task_type": "CAUSAL_LM",
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.target_modules,
        "bias": lora.bias,
    }
