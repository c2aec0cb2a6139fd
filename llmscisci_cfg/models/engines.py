"""Choosing the engine a recipe's ``generation`` section asks for: transformers (a local model,
loaded here), an OpenAI-compatible server, or vLLM. Kept apart from `llmscisci_cfg.models.generate`
(the engine protocol and the transformers engine), which the other backends import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmscisci_cfg.models.generate import TransformersEngine

if TYPE_CHECKING:
    from llmscisci_cfg.models.generate import Engine


def engine_for(job: Any, device: str = "auto", tokenizer: Any = None) -> Engine:
    """The engine a recipe's ``generation`` section asks for (a local model is loaded here;
    ``tokenizer``: the recipe's, already loaded)."""
    g = job.recipe.generation
    if g.backend == "openai":
        from llmscisci_cfg.models.remote import OpenAIEngine

        return OpenAIEngine(
            g.base_url,
            g.model or job.model.name,
            api_key_env=g.api_key_env,
            max_concurrency=g.max_concurrency,
            timeout=g.timeout,
            max_retries=g.max_retries,
        )
    if g.backend == "vllm":
        from llmscisci_cfg.models.vllm_engine import VLLMEngine

        return VLLMEngine(job.model.source, seed=job.recipe.train.seed)
    from llmscisci_cfg.models import load

    load.quiet_bitsandbytes()
    spec = load.LoadSpec.for_generation(job, load.pick_device(device))
    model = load.load_for_generation(job, spec)
    tokenizer = (
        tokenizer if tokenizer is not None else load.for_generation(load.load_tokenizer(job))
    )
    return TransformersEngine(
        model,
        tokenizer,
        batch_size=g.batch_size,
        compile=g.compile,
        description=f"transformers {job.model.name}",
    )
