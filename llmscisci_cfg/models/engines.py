"""The one engine factory: the engine a resolved generation spec asks for.

- `open_engine`: eval, predict and `rewards test` open a model reference for a `GenSpec`: a
  local transformers model (weights, tokenizer and the chat template it was trained with,
  through `llmscisci_cfg.models.load.open_model`), an OpenAI-compatible server (the tokenizer
  only when it is here, for counting tokens), or vLLM in-process.
- `make_engine`: the engine over a model already open (serve, eval's adapter switched off,
  GRPO's rollouts over the policy being trained).

Kept apart from `llmscisci_cfg.models.generate` (the engine protocol and the transformers
engine), which the other backends import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmscisci_cfg.models.genspec import GenSpec
from llmscisci_cfg.models.load import Opened, open_model, pick_device, quiet_bitsandbytes
from llmscisci_cfg.models.refs import ModelRef, TemplateRef

if TYPE_CHECKING:
    from llmscisci_cfg.models.generate import Engine
    from llmscisci_cfg.recipe.schema import ModelSpec


def make_engine(
    gen: GenSpec,
    opened: Opened | None = None,
    *,
    description: str | None = None,
    manage_model: bool = True,
    compile: str | None = None,
    batch_size: int | None = None,
    model_name: str | None = None,
) -> Engine:
    """The engine ``gen`` asks for: a remote server, vLLM (``model_name``: what it loads), or
    the transformers engine over ``opened`` (``compile`` and ``batch_size`` replace the
    spec's: GRPO's rollouts and a server choose their own)."""
    if gen.backend == "openai":
        from llmscisci_cfg.models.remote import OpenAIEngine

        r = gen.remote
        return OpenAIEngine(
            r.base_url,
            r.model,
            api_key_env=r.api_key_env,
            max_concurrency=r.max_concurrency,
            timeout=r.timeout,
            max_retries=r.max_retries,
            grammar=r.grammar,
        )
    if gen.backend == "vllm":
        from llmscisci_cfg.models.vllm_engine import VLLMEngine

        return VLLMEngine(model_name or "", seed=gen.sampling.seed or 0)
    from llmscisci_cfg.models.generate import TransformersEngine

    if opened is None or opened.model is None:
        raise ValueError("the transformers backend needs an opened model")
    return TransformersEngine(
        opened.model,
        opened.tokenizer,
        batch_size=batch_size or gen.batch_size,
        compile=compile or gen.compile,
        description=description or f"transformers {opened.description}",
        manage_model=manage_model,
    )


def open_engine(
    gen: GenSpec,
    model: ModelRef,
    template: TemplateRef,
    settings: ModelSpec,
    device: str = "auto",
    warn: Any = None,
) -> tuple[Engine, Opened]:
    """The engine for ``model`` under ``gen``, and what was opened: the weights and tokenizer
    (transformers), or the tokenizer alone when it is here (a server, vLLM: for counting
    tokens and rendering prompts the same way), with the chat template in use."""
    if gen.backend == "transformers":
        quiet_bitsandbytes()
        opened = open_model(model, template, pick_device(device), settings, warn)
        return make_engine(gen, opened), opened
    opened = tokenizer_only(model, template, False, warn)
    name = model.source if gen.backend == "vllm" else None
    return make_engine(gen, opened, model_name=name), opened


def tokenizer_only(
    model: ModelRef,
    template: TemplateRef,
    required: bool = True,
    warn: Any = None,
    base: ModelRef | None = None,
) -> Opened:
    """``model``'s tokenizer and chat template without its weights. Not ``required`` (a
    remote backend): None when it is not here without a download, or does not load.
    ``base``: as `open_tokenizer`'s."""
    from llmscisci_cfg.errors import UserError
    from llmscisci_cfg.models.load import describe, open_tokenizer, tokenizer_available

    if not required and not tokenizer_available(model):  # a hosted model: no download
        return Opened(None, None, template, describe(model))
    try:
        tokenizer, used = open_tokenizer(model, template, warn, base)
    except UserError:
        if required:
            raise
        return Opened(None, None, template, describe(model))
    return Opened(None, tokenizer, used, describe(model))
