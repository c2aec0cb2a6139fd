"""Compile a `Recipe` into what TRL receives: config kwargs, LoRA, quantization, model kwargs.

One small function per method (`compile_sft`, `compile_dpo`, `compile_grpo`). Light: no
torch/trl/transformers import, so `llmscisci plan` shows exactly what `run` will pass to
``trl.SFTConfig(**config_kwargs)`` (and friends) without loading any ML library.
Every key written here is checked against TRL 1.16's config classes by a test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models.load import bnb_kwargs, model_kwargs
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import DPOMethod, GRPOLoss, GRPOMethod, Recipe, SFTMethod

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
TRL_DEFAULTS: dict[str, dict[str, Any]] = {
    "trl.SFTConfig": _COMMON_DEFAULTS
    | {
        "learning_rate": 2e-05,
        "remove_unused_columns": True,
        "max_length": 1024,
        "assistant_only_loss": False,
        "packing": False,
        "packing_strategy": "bfd",
        "padding_free": False,
    },
    "trl.DPOConfig": _COMMON_DEFAULTS
    | {
        "learning_rate": 1e-06,
        "remove_unused_columns": True,
        "max_length": 1024,
        "beta": 0.1,
        "loss_type": ["sigmoid"],
        "label_smoothing": 0.0,
        "padding_free": False,
    },
    "trl.GRPOConfig": _COMMON_DEFAULTS
    | {
        "learning_rate": 1e-06,
        "remove_unused_columns": False,
        "num_generations": 8,
        "max_completion_length": 512,
        "temperature": 1.0,
        "top_p": 1.0,
        "beta": 0.0,
        "epsilon": 0.2,
        "loss_type": "dapo",
        "scale_rewards": "group",
        "num_iterations": 1,
        "log_completions": False,
        "reward_weights": None,
        "steps_per_generation": None,
        "use_vllm": False,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.3,
        "vllm_server_base_url": None,
        "use_transformers_continuous_batching": False,
    },
}
KEY_FIELDS = ("output_dir", "learning_rate", "per_device_train_batch_size", "max_steps", "seed")
# The GRPO loss types a recipe may name (the schema's list); TRL accepts unknown names silently.
GRPO_LOSS_TYPES = get_args(GRPOLoss)


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
    """Compile the job's recipe for its device and run directory."""
    recipe, device, run_dir = job.recipe, job.device, job.run_dir
    method = recipe.method
    if method.name == "predict":
        raise UserError(
            f"{job.origin.ref}: a predict recipe trains nothing; run it with "
            f"`llmscisci predict {job.origin.ref}`"
        )
    if isinstance(method, SFTMethod):
        return compile_sft(recipe, device, run_dir)
    if isinstance(method, DPOMethod):
        return compile_dpo(recipe, device, run_dir)
    return compile_grpo(recipe, device, run_dir)


def compile_sft(recipe: Recipe, device: str, run_dir: Path) -> Compiled:
    """`trl.SFTConfig` kwargs: prompt + completion conversations, loss on the assistant turn."""
    m = recipe.method
    assert isinstance(m, SFTMethod)
    kwargs = training_kwargs(recipe, device, run_dir) | {
        "max_length": m.max_length,
        "assistant_only_loss": m.assistant_only_loss,
        "packing": m.packing,
        "packing_strategy": "bfd",  # whole examples; checks refuse nothing else
        "padding_free": m.padding_free,
    }
    return Compiled(
        method="sft",
        device=device,
        config_class="trl.SFTConfig",
        trainer_class="trl.SFTTrainer",
        config_kwargs=kwargs,
        model_kwargs=model_kwargs(recipe.model, device),
        lora_kwargs=lora_kwargs(recipe),
        bnb_kwargs=bnb_kwargs(recipe.model),
    )


def compile_dpo(recipe: Recipe, device: str, run_dir: Path) -> Compiled:
    """`trl.DPOConfig` kwargs; with LoRA the reference model is the base with the adapter off."""
    m = recipe.method
    assert isinstance(m, DPOMethod)
    kwargs = training_kwargs(recipe, device, run_dir) | {
        "beta": m.beta,
        "loss_type": [m.loss_type],
        "label_smoothing": m.label_smoothing,
        "max_length": m.max_length,
        "padding_free": m.padding_free,
    }
    return Compiled(
        method="dpo",
        device=device,
        config_class="trl.DPOConfig",
        trainer_class="trl.DPOTrainer",
        config_kwargs=kwargs,
        model_kwargs=model_kwargs(recipe.model, device),
        lora_kwargs=lora_kwargs(recipe),
        bnb_kwargs=bnb_kwargs(recipe.model),
    )


def compile_grpo(recipe: Recipe, device: str, run_dir: Path) -> Compiled:
    """`trl.GRPOConfig` kwargs plus the reward names and weights (in recipe order).

    TRL derives ``generation_batch_size = per_device × num_processes × steps_per_generation``;
    we pin ``steps_per_generation`` to the accumulation steps so one generation feeds one
    optimizer step.
    """
    m = recipe.method
    assert isinstance(m, GRPOMethod)
    if m.loss_type not in GRPO_LOSS_TYPES:  # a recipe built in code may skip validation
        raise UserError(
            f"method.loss_type: unknown {m.loss_type!r}; choose one of {GRPO_LOSS_TYPES}"
        )
    t, n_proc = recipe.train, recipe.launch.num_processes
    rewards = recipe.rewards or []
    weights = [float(r.weight) for r in rewards]
    kwargs = (
        training_kwargs(recipe, device, run_dir)
        | {
            "remove_unused_columns": False,  # reward functions read gold and the other columns
            "num_generations": m.num_generations,
            "max_completion_length": m.max_completion_length,
            "temperature": m.temperature,
            "top_p": m.top_p,
            "beta": m.beta,
            "epsilon": m.epsilon,
            "loss_type": m.loss_type,
            "scale_rewards": m.scale_rewards,
            "num_iterations": m.num_iterations,
            "log_completions": m.log_completions,
            "reward_weights": weights,
            "steps_per_generation": t.gradient_accumulation_steps,
        }
        | rollout_kwargs(recipe)
    )
    kwargs["per_device_eval_batch_size"] = grpo_eval_batch(recipe)
    generation_batch = t.per_device_batch_size * n_proc * t.gradient_accumulation_steps
    return Compiled(
        method="grpo",
        device=device,
        config_class="trl.GRPOConfig",
        trainer_class="trl.GRPOTrainer",
        config_kwargs=kwargs,
        model_kwargs=model_kwargs(recipe.model, device),
        lora_kwargs=lora_kwargs(recipe),
        bnb_kwargs=bnb_kwargs(recipe.model),
        reward_names=[r.label for r in rewards],
        reward_weights=weights,
        derived={
            "generation_batch_size": generation_batch,
            "prompts_per_generation": generation_batch // m.num_generations,
            "rollouts": rollouts(recipe, device),
        },
        engine_rollouts=engine_rollouts(recipe, device),
        merged_rollouts=recipe.generation.rollout_weights == "merged"
        and engine_rollouts(recipe, device),
    )


def rollout_kwargs(recipe: Recipe) -> dict[str, Any]:
    """TRL's own generation switches for GRPO rollouts, from ``generation``."""
    g = recipe.generation
    kwargs: dict[str, Any] = {
        "use_vllm": g.backend == "vllm",
        "use_transformers_continuous_batching": g.continuous_batching,
    }
    if g.backend == "vllm":
        kwargs["vllm_mode"] = g.vllm_mode
        kwargs["vllm_gpu_memory_utilization"] = g.vllm_gpu_memory_utilization
        if g.vllm_mode == "server":
            kwargs["vllm_server_base_url"] = g.base_url
    return kwargs


def grpo_eval_batch(recipe: Recipe) -> int:
    """GRPO's per-device eval batch: the training one, or one group when evaluation is on and
    the training batch (over all processes) does not hold whole groups (TRL requires them)."""
    t, m = recipe.train, recipe.method
    uneven = (t.per_device_batch_size * recipe.launch.num_processes) % m.num_generations
    evaluates = bool(t.eval_steps)  # as `training_kwargs` turns evaluation on
    return m.num_generations if evaluates and uneven else t.per_device_batch_size


def rollout_rows(recipe: Recipe) -> int:
    """Completions one process generates in one call: its share of the generation batch
    (per-device batch × accumulation steps), or an eval batch when that is larger."""
    t = recipe.train
    return max(t.per_device_batch_size * t.gradient_accumulation_steps, grpo_eval_batch(recipe))


#: transformers' continuous batching defaults: tokens per (full-attention) page, and the most
#: tokens one forward of its scheduler takes.
CB_PAGE_SIZE, CB_MAX_BATCH_TOKENS = 256, 8192
CB_MAX_MEMORY_PERCENT = 0.9


def continuous_batching_config(rows: int, prompt_tokens: int, completion_tokens: int) -> dict:
    """TRL's ``transformers_continuous_batching_config`` for GRPO rollouts of ``rows`` requests
    whose prompts are at most ``prompt_tokens`` long: a paged KV cache that holds every request
    at once (a page more each), and scheduler batches no larger than that work.

    Left to itself the cache takes half of the free memory when generation starts (TRL's
    ``max_memory_percent`` 0.5): on a GPU whatever the training left, which `plan` cannot
    know; on CPU half of the free RAM (11 GiB for a 2-layer model, 2026-11-27). Sized here, it
    is what the work needs, and the attention masks transformers sizes from
    ``max_batch_tokens`` shrink with it. The price: where the work needs more than 90% of the
    free memory, transformers stops with a MemoryError at the first rollout instead of
    queueing requests in a smaller cache; `plan --here` shows the cache beside the GPU.
    """
    per_row = prompt_tokens + completion_tokens
    return {
        "page_size": CB_PAGE_SIZE,
        "num_blocks": rows * (-(-per_row // CB_PAGE_SIZE) + 1),
        "max_batch_tokens": min(CB_MAX_BATCH_TOKENS, rows * per_row),
        # transformers refuses a cache that needs more than this share of the free memory
        # (TRL's own 0.5 would refuse a sized cache it could have shrunk and queued)
        "max_memory_percent": CB_MAX_MEMORY_PERCENT,
    }


def engine_rollouts(recipe: Recipe, device: str) -> bool:
    """Whether GRPO's rollouts go through our engine: a transformers backend whose decode step
    can be compiled (``generation.compile`` on, or auto on CUDA without 4-bit/8-bit weights,
    which bitsandbytes keeps from compiling, unless the rollouts decode a merged copy).
    Otherwise TRL's own generate runs them."""
    g = recipe.generation
    if g.backend != "transformers" or g.continuous_batching:
        return False
    if recipe.launch.distributed != "ddp":  # sharded weights: TRL's gathered generate only
        return False
    if g.compile == "on":
        return True
    dense = recipe.model.quantization is None or g.rollout_weights == "merged"
    return g.compile == "auto" and device == "cuda" and dense


def rollouts(recipe: Recipe, device: str) -> str:
    """What GRPO's rollouts will use, for `plan`."""
    g = recipe.generation
    if g.backend == "vllm":
        where = f"server at {g.base_url}" if g.vllm_mode == "server" else "colocated on the GPU"
        return f"vLLM ({where})"
    if g.continuous_batching:
        return "transformers continuous batching (paged attention; cache sized for the rollouts)"
    if engine_rollouts(recipe, device):
        how = "compiled decode step" if device == "cuda" else "no compile off CUDA"
        if g.rollout_weights == "merged":
            how += "; a merged copy of base + LoRA, refreshed each generation"
        return f"the llmscisci engine (static KV cache, {how})"
    if recipe.launch.distributed != "ddp":
        why = f"{recipe.launch.distributed} shards the weights"
    elif recipe.model.quantization:
        why = f"{recipe.model.quantization.bits}-bit weights cannot be compiled"
    elif g.compile == "off":
        why = "generation.compile: off"
    else:
        why = "no compile off CUDA"
    return f"TRL's generate (dynamic KV cache; {why})"


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
