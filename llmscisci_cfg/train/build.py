"""From a `Compiled` recipe to a ready TRL trainer: model, tokenizer, LoRA, config, rewards, data.

YAML → `Job` → `Compiled` → ``trl.*Trainer(...)``: the kwargs TRL receives are the ones
`llmscisci plan` prints. Models and tokenizers load through `llmscisci_cfg.models.load`;
heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models.load import LoadSpec, load_model, materialize_builtin
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.train import methods
from llmscisci_cfg.train.compile import Compiled
from llmscisci_cfg.train.methods import TrainingMethod


@dataclass
class Built:
    """The trainer and the pieces the runner records."""

    trainer: Any
    tokenizer: Any
    reward_funcs: list[Any]
    data_report: Any


def build_trainer(job: Job, compiled: Compiled, tokenizer: Any, callbacks: list[Any] = ()) -> Built:
    """The TRL trainer for ``job`` (the dataset comes from `data.preprocess.build_dataset`,
    with the method's rows; what else the trainer takes is the method's: its reward stack,
    its reference model)."""
    from accelerate import PartialState

    from llmscisci_cfg.data.preprocess import build_dataset, eval_split

    method = methods.get(compiled.method)
    with PartialState().main_process_first():  # rank 0 fills the dataset cache, the others read it
        dataset, report = build_dataset(job, method, tokenizer=tokenizer)
    args = make_config(compiled)
    require_examples(job, dataset, report, args.eval_strategy != "no")
    evaluate = eval_split(dataset)  # a validation file when the recipe has one, else test
    if method.after_data is not None:
        method.after_data(args, job.recipe, report)
    spec = load_spec(compiled)
    model = load_model(job.model, spec)
    columns = dataset["train"].column_names
    rewards = make_rewards(job, tokenizer, columns) if method.rewards else []
    train = train_rows(method, dataset["train"], job.recipe.train.seed)
    kwargs: dict[str, Any] = {
        "model": model,
        "args": args,
        "train_dataset": train,
        "eval_dataset": dataset[evaluate] if args.eval_strategy != "no" else None,
        "processing_class": tokenizer,
        "peft_config": make_lora(compiled),
        "callbacks": list(callbacks),
    }
    if method.rewards:
        kwargs["reward_funcs"] = rewards
    if compiled.lora_kwargs is None and method.needs_reference(getattr(args, "beta", None)):
        if method.ref_model_arg:  # a frozen copy of the start weights
            kwargs["ref_model"] = load_model(job.model, spec)
        else:  # TRL reloads the reference from config._name_or_path
            _ensure_loadable(model, job)
    trainer = trainer_class(compiled)(**kwargs)
    return Built(trainer=trainer, tokenizer=tokenizer, reward_funcs=rewards, data_report=report)


def train_rows(method: TrainingMethod, train: Any, seed: int) -> Any:
    """The training split as the trainer gets it: shuffled once with ``seed`` for a method
    whose trainer reads rows in order (`TrainingMethod.shuffle`), else as built."""
    return train.shuffle(seed=seed) if method.shuffle else train


def load_spec(compiled: Compiled) -> LoadSpec:
    """How the compiled recipe loads its model (dtype, attention, quantization, device)."""
    return LoadSpec(bnb=compiled.bnb_kwargs, device=compiled.device, **compiled.model_kwargs)


def require_examples(job: Job, dataset: Any, report: Any, evaluate: bool) -> None:
    """`UserError` when a split the trainer reads is empty (TRL would fail with a traceback)."""
    from llmscisci_cfg.data.preprocess import eval_split

    for split in ("train", eval_split(dataset)) if evaluate else ("train",):
        if len(dataset[split]) == 0:
            dropped = ", ".join(f"{k}: {v}" for k, v in report.dropped.items()) or "none"
            raise UserError(
                f"{job.data.key} {job.data.ref}: the {split} split has no examples "
                f"({report.rows} source rows, {report.examples} examples; dropped: {dropped}); "
                "check data.columns, data.aspects, data.split and data.length_filter"
            )


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def trainer_class(compiled: Compiled) -> Any:
    """TRL's trainer class; GRPO with `Compiled.engine_rollouts` gets the engine's rollouts."""
    cls = _import(compiled.trainer_class)
    if compiled.engine_rollouts:
        from llmscisci_cfg.train.rollouts import with_engine_rollouts

        return with_engine_rollouts(cls, merged=compiled.merged_rollouts)
    return cls


def make_config(compiled: Compiled) -> Any:
    """``trl.SFTConfig(**config_kwargs)`` (or DPO/GRPO)."""
    return _import(compiled.config_class)(**compiled.config_kwargs)


def make_lora(compiled: Compiled) -> Any:
    """``peft.LoraConfig`` or None."""
    if compiled.lora_kwargs is None:
        return None
    from peft import LoraConfig

    return LoraConfig(**compiled.lora_kwargs)


def make_rewards(job: Job, tokenizer: Any, columns: list[str]) -> list[Any]:
    """The reward callables in recipe order (their weights are in the GRPO config); each
    plug-in's signature is checked against the dataset's ``columns``."""
    from llmscisci_cfg.rewards.compose import build_rewards

    stack = build_rewards(
        job.recipe.rewards or [],
        job.source_dir,
        job.label_kinds,
        tokenizer=tokenizer,
        columns=columns,
    )
    return list(stack.funcs)


def _ensure_loadable(model: Any, job: Job) -> None:
    """Give an in-memory built-in model a directory TRL can reload its reference copy from."""
    path = getattr(model.config, "_name_or_path", "")
    if path and Path(path).exists():
        return
    model.config._name_or_path = str(materialize_builtin(job.model.name, job.recipe.train.seed))
