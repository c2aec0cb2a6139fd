"""From a `Compiled` recipe to a ready TRL trainer: model, tokenizer, LoRA, config, rewards, data.

YAML → `Recipe` → `Compiled` → ``trl.*Trainer(...)``: the kwargs TRL receives are the ones
`llmscisci plan` prints. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.runs.manifest import model_source
from llmscisci_cfg.runs.rundir import MANIFEST
from llmscisci_cfg.train.compile import Compiled


@dataclass
class Built:
    """The trainer and the pieces the runner records."""

    trainer: Any
    tokenizer: Any
    reward_funcs: list[Any]
    data_report: Any


def build_trainer(recipe: Recipe, compiled: Compiled, callbacks: list[Any] = ()) -> Built:
    """The TRL trainer for ``recipe`` (the dataset comes from `preprocess.build_dataset`)."""
    from accelerate import PartialState

    from llmscisci_cfg.data.preprocess import build_dataset
    from llmscisci_cfg.models.chat import load_tokenizer

    tokenizer = load_tokenizer(recipe)
    with PartialState().main_process_first():  # rank 0 fills the dataset cache, the others read it
        dataset, report = build_dataset(recipe, tokenizer=tokenizer)
    args = make_config(compiled)
    require_examples(recipe, dataset, report, args.eval_strategy != "no")
    model = load_model(recipe, compiled)
    columns = dataset["train"].column_names
    rewards = make_rewards(recipe, tokenizer, columns) if compiled.method == "grpo" else []
    kwargs: dict[str, Any] = {
        "model": model,
        "args": args,
        "train_dataset": dataset["train"],
        "eval_dataset": dataset["test"] if args.eval_strategy != "no" else None,
        "processing_class": tokenizer,
        "peft_config": make_lora(compiled),
        "callbacks": list(callbacks),
    }
    if compiled.method == "grpo":
        kwargs["reward_funcs"] = rewards
    if compiled.method == "dpo" and compiled.lora_kwargs is None:
        kwargs["ref_model"] = load_model(recipe, compiled)  # the frozen copy of the start weights
    if compiled.method == "grpo" and compiled.lora_kwargs is None and args.beta > 0:
        _ensure_loadable(model, recipe)  # TRL reloads the reference from config._name_or_path
    trainer = trainer_class(compiled)(**kwargs)
    return Built(trainer=trainer, tokenizer=tokenizer, reward_funcs=rewards, data_report=report)


def require_examples(recipe: Recipe, dataset: Any, report: Any, evaluate: bool) -> None:
    """`UserError` when a split the trainer reads is empty (TRL would fail with a traceback)."""
    for split in ("train", "test") if evaluate else ("train",):
        if len(dataset[split]) == 0:
            dropped = ", ".join(f"{k}: {v}" for k, v in report.dropped.items()) or "none"
            raise UserError(
                f"data.source.path {recipe.data.source.path}: the {split} split has no examples "
                f"({report.rows} source rows, {report.examples} examples; dropped: {dropped}); "
                "check data.columns, data.aspects, data.split and data.length_filter"
            )


def quiet_bitsandbytes() -> None:
    """bitsandbytes warns about an optional CPU kernel package on import; it is noise here."""
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def trainer_class(compiled: Compiled) -> Any:
    return _import(compiled.trainer_class)


def make_config(compiled: Compiled) -> Any:
    """``trl.SFTConfig(**config_kwargs)`` (or DPO/GRPO)."""
    return _import(compiled.config_class)(**compiled.config_kwargs)


def make_lora(compiled: Compiled) -> Any:
    """``peft.LoraConfig`` or None."""
    if compiled.lora_kwargs is None:
        return None
    from peft import LoraConfig

    return LoraConfig(**compiled.lora_kwargs)


def make_bnb(compiled: Compiled) -> Any:
    """``transformers.BitsAndBytesConfig`` or None."""
    if compiled.bnb_kwargs is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    kwargs = dict(compiled.bnb_kwargs)
    if "bnb_4bit_compute_dtype" in kwargs:
        kwargs["bnb_4bit_compute_dtype"] = getattr(torch, kwargs["bnb_4bit_compute_dtype"])
    return BitsAndBytesConfig(**kwargs)


def make_rewards(recipe: Recipe, tokenizer: Any, columns: list[str]) -> list[Any]:
    """The reward callables in recipe order (their weights are in the GRPO config); each
    plug-in's signature is checked against the dataset's ``columns``."""
    from llmscisci_cfg.rewards.compose import build_rewards, task_num_categories

    stack = build_rewards(
        recipe.rewards or [],
        recipe.source_dir,
        task_num_categories(recipe),
        tokenizer=tokenizer,
        columns=columns,
    )
    return list(stack.funcs)


# ----------------------------------------------------------------------------- models


def load_model(recipe: Recipe, compiled: Compiled) -> Any:
    """The base model: built-in tiny (from the seed), a run's ``final/``, a local dir or a hub id."""
    from llmscisci_cfg.models import tiny

    mk = compiled.model_kwargs
    name = recipe.model.name_or_path
    if tiny.is_builtin(name):
        if compiled.bnb_kwargs is None:
            return tiny.build_tiny_model(
                name, recipe.train.seed, mk["dtype"], mk["attn_implementation"]
            )
        return load_pretrained(str(materialize_builtin(name, recipe.train.seed)), compiled)
    source = model_source(recipe)  # a UserError for a local directory that is not there
    if (Path(source) / "adapter_config.json").is_file():
        return load_adapter_merged(Path(source), mk)
    return load_pretrained(source, compiled)


def materialize_builtin(name: str, seed: int) -> Path:
    """Save a built-in model to a temporary directory (bitsandbytes quantizes at load time).

    The directory is removed when the process exits.
    """
    import atexit
    import shutil
    import tempfile

    from llmscisci_cfg.models import tiny

    directory = Path(tempfile.mkdtemp(prefix="llmscisci-builtin-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return tiny.save_tiny(name, directory, seed)


def load_pretrained(path: str, compiled: Compiled) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` with the recipe's dtype, attention and bnb config."""
    import torch
    from transformers import AutoModelForCausalLM

    mk = compiled.model_kwargs
    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, mk["dtype"]),
        "attn_implementation": mk["attn_implementation"],
        "trust_remote_code": mk["trust_remote_code"],
        "revision": mk["revision"],
    }
    bnb = make_bnb(compiled)
    if bnb is not None:
        from accelerate import PartialState

        kwargs["quantization_config"] = bnb
        index = PartialState().local_process_index
        kwargs["device_map"] = {"": index if compiled.device == "cuda" else "cpu"}
    return from_pretrained(AutoModelForCausalLM, path, "model.name_or_path", **kwargs)


def from_pretrained(cls: Any, path: str, where: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` with a missing or unreadable model as a `UserError`."""
    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:  # missing files, unknown model_type, bad config
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{where}: cannot load the model {path!r}: {reason} (offline? download the model "
            "first or give a local directory)"
        ) from None


def load_adapter_merged(final_dir: Path, model_kwargs: dict[str, Any]) -> Any:
    """A run's LoRA ``final/`` merged into its base, e.g. for GRPO after a LoRA SFT, or export.

    The base comes from the run's manifest: a built-in model rebuilt from its seed, an earlier
    run's LoRA ``final/`` (merged the same way), or a local directory / hub id loaded
    unquantized in ``model_kwargs['dtype']``.
    """
    import json

    import torch
    from peft import PeftModel

    from llmscisci_cfg.models import tiny

    manifest_path = final_dir.parent / MANIFEST
    if not manifest_path.is_file():
        raise UserError(
            f"{final_dir}: a LoRA adapter without its run's {MANIFEST}; cannot find its base model"
        )
    final = json.loads(manifest_path.read_text(encoding="utf-8"))["final"]
    base_ref, dtype = final["base_model"], model_kwargs["dtype"]
    if tiny.is_builtin(base_ref):
        base = tiny.build_tiny_model(base_ref, final.get("base_seed") or 0, dtype)
    elif (Path(base_ref) / "adapter_config.json").is_file():  # over an earlier LoRA run
        base = load_adapter_merged(Path(base_ref), model_kwargs)
    else:
        from transformers import AutoModelForCausalLM

        base = from_pretrained(
            AutoModelForCausalLM,
            base_ref,
            f"{manifest_path}: final.base_model",
            dtype=getattr(torch, dtype),
            trust_remote_code=model_kwargs.get("trust_remote_code", False),
            revision=None if Path(base_ref).is_dir() else model_kwargs.get("revision"),
        )
    return PeftModel.from_pretrained(base, str(final_dir)).merge_and_unload()


def _ensure_loadable(model: Any, recipe: Recipe) -> None:
    """Give an in-memory built-in model a directory TRL can reload its reference copy from."""
    path = getattr(model.config, "_name_or_path", "")
    if path and Path(path).exists():
        return
    model.config._name_or_path = str(
        materialize_builtin(recipe.model.name_or_path, recipe.train.seed)
    )
