"""The one place that loads model weights and tokenizers, and the one that opens a model
reference for generation.

- `open_model` / `open_tokenizer`: any model reference (`llmscisci_cfg.models.refs.ModelRef`:
  a hub id, a local folder, a run directory, ``builtin:``) opened for generation: the weights
  (a run's LoRA adapter on its base, or a full model), the tokenizer, and the chat template it
  was trained with (**the training template follows the model**: a run directory or a local
  model folder brings the template saved with its tokenizer; a recipe that names another one
  gets a warning naming both, unless it sets ``template.override``). eval, predict, serve and
  `rewards test` open models only through these two.
- `load_tokenizer`: the recipe's tokenizer with its chat template attached (training).
- `load_model`: the recipe's base model as training loads it (built-in tiny from its seed, an
  earlier run's LoRA ``final/`` merged, a local folder or a hub id), with the recipe's dtype,
  attention and bitsandbytes quantization.
- `load_run_model`: a run's ``final/``: the LoRA adapter on its base (the adapter can be
  switched off for the reference), or the full model; `load_merged`: the adapter merged.

Every failure a user can cause (offline, a typo, a missing folder) is a `UserError` naming the
model. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError, first_line
from llmscisci_cfg.models import chat, tiny
from llmscisci_cfg.models.refs import FINAL, MANIFEST, ModelRef, TemplateRef, final_info
from llmscisci_cfg.recipe.schema import ModelSpec


@dataclass(frozen=True)
class LoadSpec:
    """What ``from_pretrained`` receives, besides the path: dtype, attention, quantization, device.

    ``bnb`` holds `transformers.BitsAndBytesConfig` kwargs (None: not quantized).
    """

    dtype: str
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    bnb: dict[str, Any] | None = None
    device: str = "cpu"

    @classmethod
    def for_generation(cls, model: ModelSpec, device: str) -> LoadSpec:
        """The recipe's load settings on ``device``, for generating: quantized as in training
        on CUDA, unquantized elsewhere (bitsandbytes wants CUDA)."""
        bnb = bnb_kwargs(model) if device == "cuda" else None
        return cls(bnb=bnb, device=device, **model_kwargs(model, device))


def model_kwargs(model: ModelSpec, device: str) -> dict[str, Any]:
    """`from_pretrained` kwargs; dtype 'auto' is bfloat16 on CUDA and float32 on CPU."""
    dtype = (
        model.dtype if model.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
    )
    return {
        "dtype": dtype,
        "attn_implementation": model.attn_implementation,
        "trust_remote_code": model.trust_remote_code,
        "revision": model.revision,
    }


def bnb_kwargs(model: ModelSpec) -> dict[str, Any] | None:
    """`transformers.BitsAndBytesConfig` kwargs, or None without quantization."""
    q = model.quantization
    if q is None:
        return None
    if q.bits == 8:
        return {"load_in_8bit": True}
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": q.quant_type,
        "bnb_4bit_use_double_quant": q.double_quant,
        "bnb_4bit_compute_dtype": q.compute_dtype,
    }


def quiet_bitsandbytes() -> None:
    """bitsandbytes warns about an optional CPU kernel package on import; it is noise here."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


# ----------------------------------------------------------------------------- tokenizers


def load_tokenizer(model: ModelRef, template: TemplateRef, assistant_only: bool = False):
    """The model's tokenizer with ``template`` attached (and a pad token): what training uses.

    ``builtin:`` models get the shipped tiny tokenizer, with the BOS/EOS of the chosen shipped
    template; other names go through ``AutoTokenizer.from_pretrained`` (revision and
    trust_remote_code from the reference). ``template.name: tokenizer`` keeps the model's own
    (checked for ``{% generation %}`` markers when ``assistant_only``).
    """
    if model.builtin:
        tiny.builtin_key(model.name)
        tokenizer = tiny.load_tiny_tokenizer(template.name)
    else:
        from transformers import AutoTokenizer

        tokenizer = from_pretrained(
            AutoTokenizer,
            model.source,
            "model.name_or_path",
            what="tokenizer",
            revision=model.revision,
            trust_remote_code=model.trust_remote_code,
        )
    text = template.text
    if text is None:  # template.name: tokenizer; checked now that it is known
        text = chat.own_template(tokenizer, model.name)
        problems = chat.template_problems(text, assistant_only)
        if problems:
            raise UserError(f"the chat template of {model.name!r}: " + "; ".join(problems))
    tokenizer.chat_template = text
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer_dir(directory: Path):
    """The tokenizer saved in a model folder (with the chat template saved beside it)."""
    from transformers import AutoTokenizer

    return from_pretrained(AutoTokenizer, str(directory), str(directory), what="tokenizer")


def tokenizer_available(model: ModelRef) -> bool:
    """Whether the tokenizer can load here without a download: a built-in or local model, or
    a hub id whose tokenizer is in the Hugging Face cache (checked offline)."""
    if model.builtin or model.local_dir is not None:
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model.name, "tokenizer_config.json", revision=model.revision)
    except Exception:  # not a valid repo id
        return False
    return isinstance(found, str)


def for_generation(tokenizer):
    """Left padding and a pad token, as batched generation needs."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ----------------------------------------------------------------------------- opening


@dataclass
class Opened:
    """A model opened for generation: weights (None when only the tokenizer was asked for),
    tokenizer, the chat template in use (with its sha256), and how reports name it."""

    model: Any
    tokenizer: Any
    template: TemplateRef
    description: str
    adapter: bool = False  # a LoRA adapter on its base (`disable_adapter` gives the base)

    @property
    def context(self) -> int:
        """The longest prompt + completion the model takes."""
        return max_context(self.model, self.tokenizer)


def model_folder(model: ModelRef) -> Path | None:
    """The folder whose saved tokenizer (and template) comes with the model: a run's
    ``final/``, else a local model folder; None for a built-in or a hub id."""
    if model.run_dir is not None:
        return model.run_dir / FINAL
    return model.local_dir


def open_tokenizer(
    model: ModelRef, template: TemplateRef, warn=None, base: ModelRef | None = None
) -> tuple[Any, TemplateRef]:
    """The tokenizer to generate with and the chat template it carries (see the module doc:
    a run or local model folder brings its own template; ``template`` is the recipe's).
    ``base``: whose tokenizer a run's ``final/`` without a saved one falls back to (the run's
    recipe model)."""
    folder = model_folder(model)
    saved = None
    if folder is not None and (folder / "tokenizer_config.json").is_file():
        saved = load_tokenizer_dir(folder)
        own = getattr(saved, "chat_template", None)
        own = own.get("default") if isinstance(own, dict) else own
        if own:
            used = TemplateRef("run" if model.run_dir else "model", own, folder)
            if template.override and template.text is not None:
                saved.chat_template = template.text
                return for_generation(saved), template
            if template.explicit and template.text is not None and template.text != own:
                (warn or _warn)(
                    f"warning: {folder} was saved with its own chat template (sha256 "
                    f"{used.sha256[:12]}); the recipe names template {template.name!r} (sha256 "
                    f"{(template.sha256 or '')[:12]}): generating with the model's own; set "
                    "template.override: true to use the recipe's"
                )
            return for_generation(saved), used
    if model.run_dir is not None:  # a run's final/ without a saved tokenizer: its recipe's
        model = base if base is not None else replace(model, local_dir=model.run_dir / FINAL)
    tokenizer = for_generation(load_tokenizer(model, template))
    if template.text is None:
        template = TemplateRef(template.name, tokenizer.chat_template)
    return tokenizer, template


def open_model(
    model: ModelRef,
    template: TemplateRef,
    device: str,
    settings: ModelSpec | None = None,
    warn=None,
) -> Opened:
    """``model`` for generation on ``device``, in eval mode, with its tokenizer and chat
    template. ``settings``: the recipe's model section (dtype, attention, quantization); a run
    directory loads with its own recipe's, so every door loads a run the same way."""
    tokenizer, used = open_tokenizer(model, template, warn)
    if model.run_dir is not None:
        final = final_info(model.run_dir)
        spec = LoadSpec.for_generation(final.settings or settings or _plain(model), device)
        loaded = load_run_model(model.run_dir, spec)
        return Opened(loaded, tokenizer, used, describe(model), adapter=final.kind == "adapter")
    spec = LoadSpec.for_generation(settings or _plain(model), device)
    if model.local_dir is not None and not model.is_adapter:
        spec = replace(spec, revision=None)  # a local folder has no hub revision
    return Opened(placed(load_model(model, spec), spec.device), tokenizer, used, describe(model))


def _plain(model: ModelRef) -> ModelSpec:
    """Default load settings for a model named without a recipe."""
    return ModelSpec(
        name_or_path=model.name,
        revision=model.revision,
        trust_remote_code=model.trust_remote_code,
    )


def describe(model: ModelRef) -> str:
    """A model as reports name it: ``builtin:tiny (weights from seed 0)``, a run's final
    model, else its name."""
    if model.builtin:
        return f"{model.name} (weights from seed {model.seed})"
    if model.run_dir is not None:
        try:
            final = model.final
        except UserError:  # a manifest that cannot say: the folder alone
            return str(model.run_dir / FINAL)
        kind = "LoRA adapter" if final.kind == "adapter" else "full model"
        return f"{model.run_dir / FINAL} ({kind} over {final.base_model})"
    return model.name


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


# ----------------------------------------------------------------------------- models


def load_model(model: ModelRef, spec: LoadSpec) -> Any:
    """A base model as training loads it: built-in tiny (from the reference's seed), a run's
    ``final/`` (a LoRA adapter merged into its base), a local folder or a hub id."""
    if model.builtin:
        if spec.bnb is None:
            return tiny.build_tiny_model(
                model.name, model.seed, spec.dtype, spec.attn_implementation
            )
        return load_pretrained(str(materialize_builtin(model.name, model.seed)), spec)
    source = model.source  # a UserError for a local directory that is not there
    if model.is_adapter:
        return load_merged(Path(source).parent, spec)
    return load_pretrained(source, spec)


def load_pretrained(path: str, spec: LoadSpec, where: str = "model.name_or_path") -> Any:
    """``AutoModelForCausalLM.from_pretrained`` with the spec's dtype, attention and quantization."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, spec.dtype),
        "attn_implementation": spec.attn_implementation,
        "trust_remote_code": spec.trust_remote_code,
        "revision": spec.revision,
    }
    if spec.bnb is not None:
        from accelerate import PartialState

        kwargs["quantization_config"] = make_bnb(spec.bnb)
        index = PartialState().local_process_index
        kwargs["device_map"] = {"": index if spec.device == "cuda" else "cpu"}
    return from_pretrained(AutoModelForCausalLM, path, where, **kwargs)


def make_bnb(bnb: dict[str, Any]) -> Any:
    """``transformers.BitsAndBytesConfig`` from its kwargs (compute dtype by name)."""
    import torch
    from transformers import BitsAndBytesConfig

    quiet_bitsandbytes()
    kwargs = dict(bnb)
    if "bnb_4bit_compute_dtype" in kwargs:
        kwargs["bnb_4bit_compute_dtype"] = getattr(torch, kwargs["bnb_4bit_compute_dtype"])
    return BitsAndBytesConfig(**kwargs)


def from_pretrained(cls: Any, path: str, where: str, what: str = "model", **kwargs: Any) -> Any:
    """``cls.from_pretrained`` with a missing or unreadable model as a `UserError`.

    From a local folder any failure is the folder's (a truncated ``model.safetensors``, a
    hand-edited ``config.json``, a half-written adapter); from a hub id, a missing or
    unreadable download.
    """
    local = Path(path).is_dir()
    try:
        return cls.from_pretrained(path, **kwargs)
    except Exception as exc:
        if not local and not isinstance(exc, (OSError, ValueError)):
            raise
        hint = (
            "the folder is damaged or not a model saved by transformers"
            if local
            else "offline? download the model first or give a local directory; builtin:tiny "
            "works offline"
        )
        raise UserError(
            f"{where}: cannot load the {what} of {path!r}: {type(exc).__name__}: "
            f"{first_line(exc)} ({hint})"
        ) from None


def materialize_builtin(name: str, seed: int) -> Path:
    """Save a built-in model to a temporary directory (bitsandbytes quantizes at load time; TRL
    reloads a reference model from a path). Removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="llmscisci-builtin-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return tiny.save_tiny(name, directory, seed)


def load_merged(run_dir: Path, spec: LoadSpec) -> Any:
    """A run's LoRA ``final/`` merged into its base, loaded unquantized in ``spec.dtype``."""
    return _with_adapter(run_dir, replace(spec, bnb=None)).merge_and_unload()


def _with_adapter(run_dir: Path, spec: LoadSpec) -> Any:
    """``PeftModel`` of a run's adapter over its base: a built-in rebuilt from its seed, an
    earlier run's LoRA ``final/`` (merged the same way), or a local folder / hub id."""
    from peft import PeftModel

    final = final_info(run_dir)
    base_ref = final.base_model
    if tiny.is_builtin(base_ref):
        base = tiny.build_tiny_model(base_ref, final.base_seed or 0, spec.dtype)
    elif (Path(base_ref) / "adapter_config.json").is_file():  # over an earlier LoRA run
        base = load_merged(Path(base_ref).parent, spec)
    else:
        where = f"{run_dir / MANIFEST}: final.base_model"
        local = Path(base_ref).is_dir()
        base = load_pretrained(base_ref, replace(spec, revision=None) if local else spec, where)
    final_dir = _require_final(run_dir)
    try:
        return PeftModel.from_pretrained(base, str(final_dir))
    except Exception as exc:  # a half-written or hand-edited adapter
        raise UserError(
            f"{final_dir}: cannot load the LoRA adapter: {type(exc).__name__}: {first_line(exc)} "
            "(the folder is damaged or not an adapter saved by peft)"
        ) from None


def load_run_model(run_dir: Path, spec: LoadSpec) -> Any:
    """A run's ``final/`` in eval mode on ``spec.device``: the adapter on its base (switch it
    off with ``model.disable_adapter()`` for the reference), or the full model."""
    final_dir = _require_final(run_dir)
    if final_info(run_dir).kind == "adapter":
        return placed(_with_adapter(run_dir, spec), spec.device)
    spec = replace(spec, revision=None)  # a local folder has no hub revision
    return placed(load_pretrained(str(final_dir), spec, str(final_dir)), spec.device)


def _require_final(run_dir: Path) -> Path:
    final_dir = run_dir / FINAL
    if not final_dir.is_dir() or not any(final_dir.iterdir()):
        raise UserError(f"{run_dir}: no {FINAL}/ model yet (the run has not finished)")
    return final_dir


def placed(model: Any, device: str) -> Any:
    """``model`` on ``device`` (a quantized model stays where bitsandbytes put it), eval mode."""
    if not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None:
        model = model.to(device)
    return model.eval()


def pick_device(device: str = "auto") -> str:
    """``auto`` is CUDA when present; asking for CUDA without one is a `UserError`."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible")
    return device


def max_context(model: Any, tokenizer: Any) -> int:
    """The longest prompt + completion the model takes (its position table, else the tokenizer's)."""
    config = getattr(model, "config", None)
    text = getattr(config, "get_text_config", lambda: config)()
    for value in (
        getattr(text, "max_position_embeddings", None),
        getattr(tokenizer, "model_max_length", None),
    ):
        if isinstance(value, int) and 0 < value < 10**7:
            return value
    return 4096


def context_length(model: ModelRef) -> int:
    """The model's context from its config, without loading weights (built-in: the constant)."""
    if model.builtin:
        return tiny.MAX_POSITIONS
    from transformers import AutoConfig

    folder = model_folder(model)
    if model.run_dir is not None and final_info(model.run_dir).kind == "adapter":
        base = final_info(model.run_dir).base_model  # an adapter has no config: its base's
        if tiny.is_builtin(base):
            return tiny.MAX_POSITIONS
        folder = Path(base) if Path(base).is_dir() else None
        model = replace(model, name=base, local_dir=folder)
    try:
        config = AutoConfig.from_pretrained(
            str(folder) if folder else model.source, revision=None if folder else model.revision
        )
    except (OSError, ValueError):
        return 4096
    text = getattr(config, "get_text_config", lambda: config)()
    return int(getattr(text, "max_position_embeddings", 4096) or 4096)
