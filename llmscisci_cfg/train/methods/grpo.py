"""GRPO: group relative policy optimisation with the recipe's rewards (TRL's GRPOTrainer).

Rows: ``prompt`` plus ``gold``, ``id`` and ``aspect`` (TRL passes them to the rewards); the
policy writes the answers. The config pins ``steps_per_generation`` to the accumulation steps
(one generation feeds one optimizer step) and carries the reward weights in recipe order.
Rollouts go through TRL's own switches (vLLM, continuous batching) or the llmscisci engine
(`engine_rollouts`); this module says which (`rollouts`), and sizes continuous batching's
paged cache from the built data (`continuous_batching_config`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from llmscisci_cfg.data.rows import Example, MessagesFn, Row, base_row
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import GRPOLoss, GRPOMethod, Recipe
from llmscisci_cfg.train.methods.descriptor import MemoryFactors, TrainingMethod

# The GRPO loss types a recipe may name (the schema's list); TRL accepts unknown names silently.
GRPO_LOSS_TYPES = get_args(GRPOLoss)


def config_kwargs(recipe: Recipe, device: str) -> dict[str, Any]:
    """`trl.GRPOConfig` kwargs, with the reward weights (in recipe order).

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
    return {
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
        "reward_weights": [float(r.weight) for r in recipe.rewards or []],
        "steps_per_generation": recipe.train.gradient_accumulation_steps,
        "per_device_eval_batch_size": eval_batch(recipe),
    } | rollout_kwargs(recipe)


def extras(recipe: Recipe, device: str) -> dict[str, Any]:
    """`Compiled` fields of GRPO's rollouts: the generation batch, what runs the rollouts, and
    whether they go through our engine (from a merged copy)."""
    t, m = recipe.train, recipe.method
    generation_batch = t.per_device_batch_size * recipe.launch.num_processes
    generation_batch *= t.gradient_accumulation_steps
    engine = engine_rollouts(recipe, device)
    return {
        "derived": {
            "generation_batch_size": generation_batch,
            "prompts_per_generation": generation_batch // m.num_generations,
            "rollouts": rollouts(recipe, device),
        },
        "engine_rollouts": engine,
        "merged_rollouts": recipe.generation.rollout_weights == "merged" and engine,
    }


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


def eval_batch(recipe: Recipe) -> int:
    """GRPO's per-device eval batch: the training one, or one group when evaluation is on and
    the training batch (over all processes) does not hold whole groups (TRL requires them)."""
    t, m = recipe.train, recipe.method
    uneven = (t.per_device_batch_size * recipe.launch.num_processes) % m.num_generations
    evaluates = bool(t.eval_steps)  # as `compile.training_kwargs` turns evaluation on
    return m.num_generations if evaluates and uneven else t.per_device_batch_size


def rollout_rows(config_kwargs: Mapping[str, Any]) -> int:
    """Completions one process generates in one call: its share of the generation batch
    (per-device batch × accumulation steps), or an eval batch when that is larger (read from
    the compiled config kwargs)."""
    k = config_kwargs
    train = k["per_device_train_batch_size"] * k["gradient_accumulation_steps"]
    return max(train, k["per_device_eval_batch_size"])


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


def size_paged_cache(config: Any, recipe: Recipe, report: Any) -> None:
    """With continuous batching: a paged cache for the rollouts of one call (the longest
    prompt of either split), unless TRL's config already has one (`continuous_batching_config`
    says why)."""
    if not getattr(config, "use_transformers_continuous_batching", False):
        return
    lengths = report.token_lengths
    prompt = lengths.get("prompt_any") or lengths.get("prompt")
    if config.transformers_continuous_batching_config is None and prompt:
        keys = ("per_device_train_batch_size", "gradient_accumulation_steps")
        rows = rollout_rows({k: getattr(config, k) for k in (*keys, "per_device_eval_batch_size")})
        config.transformers_continuous_batching_config = continuous_batching_config(
            rows, prompt, config.max_completion_length
        )


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


@dataclass
class Rows:
    """GRPO's rows: the prompt and what the rewards read (gold, id, aspect)."""

    job: Job
    messages: MessagesFn

    def rows(self, ex: Example, held: bool, counts: Counter) -> Iterable[Row | str]:
        return [base_row(ex, self.messages)]


METHOD = TrainingMethod(
    name="grpo",
    schema=GRPOMethod,
    config_class="trl.GRPOConfig",
    trainer_class="trl.GRPOTrainer",
    config_kwargs=config_kwargs,
    trl_defaults={
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
    maker=Rows,
    reference="beta",  # TRL reloads it from the policy's config path (no ref_model argument)
    rewards=True,
    memory=MemoryFactors(scores_completions=True, generates=True),
    hyperparameters=(
        "beta",
        "loss_type",
        "num_generations",
        "max_completion_length",
        "temperature",
    ),
    extras=extras,
    after_data=size_paged_cache,
)
