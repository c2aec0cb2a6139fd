"""The one place that loads model weights and tokenizers.

- `load_tokenizer`: the recipe's tokenizer with its chat template attached;
  `load_saved_tokenizer`: the tokenizer saved with a model (a run's ``final/``).
- `load_model`: the recipe's base model as training loads it (built-in tiny from its seed, an
  earlier run's LoRA ``final/`` merged, a local folder or a hub id), with the recipe's dtype,
  attention and bitsandbytes quantization.
- `load_run_model`: a run's ``final/`` for generation: the LoRA adapter on its base (the
  adapter can be switched off for the reference), or the full model.
- `load_merged`: a run's LoRA ``final/`` merged into its base (export, GRPO after LoRA SFT).

Every failure a user can cause (offline, a typo, a missing folder) is a `UserError` naming the
model. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.errors import UserError, first_line
from llmscisci_cfg.models import chat, tiny
from llmscisci_cfg.runs.rundir import RunDir

if TYPE_CHECKING:
    from llmscisci_cfg.recipe.resolve import Job


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
    def for_generation(cls, job: Job, device: str) -> LoadSpec:
        """The recipe's load settings on ``device``, for generating (eval): quantized as in
        training on CUDA, unquantized elsewhere (bitsandbytes wants CUDA)."""
        from llmscisci_cfg.train.compile import bnb_kwargs, model_kwargs

        bnb = bnb_kwargs(job.recipe) if device == "cuda" else None
        return cls(bnb=bnb, device=device, **model_kwargs(job.recipe, device))


def quiet_bitsandbytes() -> None:
    """bitsandbytes warns about an optional CPU kernel package on import; it is noise here."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


# ----------------------------------------------------------------------------- tokenizers


def load_tokenizer(job: Job):
    """The recipe's tokenizer with its chat template attached (and a pad token).

    ``builtin:`` models get the shipped tiny tokenizer, with the BOS/EOS of the chosen shipped
    template; other names go through ``AutoTokenizer.from_pretrained`` (revision and
    trust_remote_code from the recipe). ``template.name: tokenizer`` keeps the model's own.
    """
    model = job.model
    if model.builtin:
        tiny.builtin_key(model.name)
        tokenizer = tiny.load_tiny_tokenizer(job.template.name)
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
    text = job.template.text
    if text is None:  # template.name: tokenizer; checked now that it is known
        text = chat.own_template(tokenizer, model.name)
        method = job.recipe.method
        assistant_only = method.name == "sft" and method.assistant_only_loss
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


def tokenizer_available(job: Job) -> bool:
    """Whether the job's tokenizer can load here without a download: a built-in or local
    model, or a hub id whose tokenizer is in the Hugging Face cache (checked offline)."""
    model = job.model
    if model.builtin or model.local_dir is not None:
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model.name, "tokenizer_config.json", revision=model.revision)
    except Exception:  # not a valid repo id
        return False
    return isinstance(found, str)


def load_saved_tokenizer(directory: Path, job: Job):
    """The tokenizer saved in ``directory`` when it carries a chat template, else the recipe's;
    left-padded for generation."""
    tokenizer = None
    if (directory / "tokenizer_config.json").is_file():
        saved = load_tokenizer_dir(directory)
        tokenizer = saved if getattr(saved, "chat_template", None) else None
    return for_generation(tokenizer if tokenizer is not None else load_tokenizer(job))


def for_generation(tokenizer):
    """Left padding and a pad token, as batched generation needs."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ----------------------------------------------------------------------------- models


def load_model(job: Job, spec: LoadSpec) -> Any:
    """The recipe's base model: built-in tiny (from the seed), a run's ``final/``, a local folder
    or a hub id."""
    model = job.model
    seed = job.recipe.train.seed
    if model.builtin:
        if spec.bnb is None:
            return tiny.build_tiny_model(model.name, seed, spec.dtype, spec.attn_implementation)
        return load_pretrained(str(materialize_builtin(model.name, seed)), spec)
    source = model.source  # a UserError for a local directory that is not there
    if model.is_adapter:
        return load_merged(RunDir.open(Path(source).parent), spec)
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


def load_merged(run: RunDir, spec: LoadSpec) -> Any:
    """A run's LoRA ``final/`` merged into its base, loaded unquantized in ``spec.dtype``."""
    return _with_adapter(run, replace(spec, bnb=None)).merge_and_unload()


def _with_adapter(run: RunDir, spec: LoadSpec) -> Any:
    """``PeftModel`` of a run's adapter over its base: a built-in rebuilt from its seed, an
    earlier run's LoRA ``final/`` (merged the same way), or a local folder / hub id."""
    from peft import PeftModel

    final = run.final
    base_ref = final.base_model
    if tiny.is_builtin(base_ref):
        base = tiny.build_tiny_model(base_ref, final.base_seed or 0, spec.dtype)
    elif (Path(base_ref) / "adapter_config.json").is_file():  # over an earlier LoRA run
        base = load_merged(RunDir.open(Path(base_ref).parent), spec)
    else:
        where = f"{run.path / 'manifest.json'}: final.base_model"
        local = Path(base_ref).is_dir()
        base = load_pretrained(base_ref, replace(spec, revision=None) if local else spec, where)
    final_dir = run.require_final()
    try:
        return PeftModel.from_pretrained(base, str(final_dir))
    except Exception as exc:  # a half-written or hand-edited adapter
        raise UserError(
            f"{final_dir}: cannot load the LoRA adapter: {type(exc).__name__}: {first_line(exc)} "
            "(the folder is damaged or not an adapter saved by peft)"
        ) from None


def load_run_model(run: RunDir, spec: LoadSpec) -> Any:
    """A run's ``final/`` in eval mode on ``spec.device``: the adapter on its base (switch it
    off with ``model.disable_adapter()`` for the reference), or the full model."""
    final_dir = run.require_final()
    if run.final.kind == "adapter":
        return placed(_with_adapter(run, spec), spec.device)
    spec = replace(spec, revision=None)  # a local folder has no hub revision
    return placed(load_pretrained(str(final_dir), spec, str(final_dir)), spec.device)


def load_for_generation(job: Job, spec: LoadSpec) -> Any:
    """The recipe's base model as training loads it, in eval mode on ``spec.device``."""
    return placed(load_model(job, spec), spec.device)


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


# ----------------------------------------------------------------------------- serving


def job_for_model(name: str) -> Job:
    """A job for a bare model name (a hub id, a local folder, ``builtin:…``), no recipe: its
    family's chat template and default load settings, as a recipe naming only it would get."""
    from llmscisci_cfg.recipe.resolve import resolve
    from llmscisci_cfg.recipe.schema import Recipe

    recipe = Recipe.model_validate(
        {
            "name": "serve",
            "model": {"name_or_path": name},
            "data": {"source": {"path": "builtin:sample"}},
            "method": {"name": "sft"},
        }
    )
    return resolve(recipe)


def load_for_serving(ref: str, device: str) -> tuple[Any, Any, str]:
    """``(model, tokenizer, description)`` for a run directory (its ``final/`` with the training
    chat template) or a model name, in eval mode on ``device``."""
    if (Path(ref) / "manifest.json").is_file():
        run = RunDir.open(ref)
        job = run.job()
        spec = LoadSpec.for_generation(job, device)
        model = load_run_model(run, spec)
        return model, load_saved_tokenizer(run.final_dir, job), f"{run.final_dir}"
    job = job_for_model(ref)
    model = load_for_generation(job, LoadSpec.for_generation(job, device))
    return model, for_generation(load_tokenizer(job)), ref


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


def context_length(job: Job) -> int:
    """The model's context from its config, without loading weights (built-in: the constant)."""
    if job.model.builtin:
        return tiny.MAX_POSITIONS
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(job.model.source, revision=job.model.revision)
    except (OSError, ValueError):
        return 4096
    text = getattr(config, "get_text_config", lambda: config)()
    return int(getattr(text, "max_position_embeddings", 4096) or 4096)
