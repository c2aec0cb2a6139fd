"""``llmscisci eval``: generate on the held-out split with the policy (and the reference), score it.

Two entry points:

- `evaluate_run`: a run directory. The policy is ``final/`` (a LoRA adapter on its base, or a
  full model); the reference is the recipe's base model (for an adapter: the same weights
  with the adapter switched off). The split is rebuilt by `preprocess.build_dataset` from
  ``recipe.resolved.yaml``: same task, template, filters and seed as training.
- `evaluate_model`: a recipe and any model name or directory, with no run: the model's
  in-context zero-shot result on the recipe's held-out split (the research's labelling study).

Generation is greedy, in batches with left padding, longest prompts first, with a progress
bar. Files are written by `eval_report.write_all`.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.eval import report as eval_report
from llmscisci_cfg.eval.metrics import parse_completion
from llmscisci_cfg.eval.report import EvalMeta, Prediction
from llmscisci_cfg.recipe.schema import GRPOMethod, Recipe
from llmscisci_cfg.runs.rundir import FINAL, MANIFEST, RESOLVED

if TYPE_CHECKING:
    from datasets import Dataset

DEFAULT_BATCH_SIZE = 16
MIN_MAX_NEW_TOKENS = 256
ANSWER_COLUMNS = ("completion", "chosen", "rejected")  # training answers (SFT, DPO)
_NOT_REWARD_COLUMNS = {"prompt", "completion", "chosen", "rejected"}


@dataclass(frozen=True)
class EvalOptions:
    """The knobs of one eval (the CLI flags)."""

    split: str = "test"
    reference: bool = False
    max_new_tokens: int | None = None  # None: see `default_max_new_tokens`
    limit: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    output_dir: Path | None = None
    device: str = "auto"


@dataclass(frozen=True)
class RunInfo:
    """A run directory as eval reads it: its recipe and what ``final/`` holds."""

    run_dir: Path
    recipe: Recipe
    final_dir: Path
    kind: str  # "adapter" or "full"
    base_model: str
    base_seed: int | None
    data_cache_key: str | None  # the dataset training used (manifest data_report.cache_key)


@dataclass
class EvalResult:
    output_dir: Path
    report: dict[str, Any]
    meta: EvalMeta
    files: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------- inputs


def open_run(run_dir: str | Path) -> RunInfo:
    """Read a run directory, or raise `UserError` saying what is missing."""
    from llmscisci_cfg.recipe.loader import load_recipe

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(
            f"{run_dir}: no such directory; give a run directory made by `llmscisci run`"
        )
    missing = [name for name in (RESOLVED, MANIFEST) if not (run_dir / name).is_file()]
    if missing:
        raise UserError(
            f"{run_dir}: not a run directory (no {' or '.join(missing)}); give the directory that "
            "`llmscisci run` printed, or use `eval --recipe RECIPE --model NAME_OR_DIR`"
        )
    manifest = _read_manifest(run_dir / MANIFEST)
    final_dir = run_dir / FINAL
    if not final_dir.is_dir() or not any(final_dir.iterdir()):
        status = manifest.get("status", "unknown")
        raise UserError(
            f"{run_dir}: the run has no {FINAL}/ model (run status: {status}); finish or resume it "
            f"with `llmscisci run RECIPE --resume --output-dir {run_dir}`"
        )
    recipe = load_recipe(run_dir / RESOLVED)
    final = manifest.get("final") or {}
    kind = final.get("kind") or (
        "adapter" if (final_dir / "adapter_config.json").is_file() else "full"
    )
    return RunInfo(
        run_dir=run_dir,
        recipe=recipe,
        final_dir=final_dir,
        kind=kind,
        base_model=final.get("base_model") or recipe.model.name_or_path,
        base_seed=final.get("base_seed", recipe.train.seed),
        data_cache_key=(manifest.get("data_report") or {}).get("cache_key"),
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the run manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: the run manifest is not a JSON object")
    return manifest


@dataclass
class EvalData:
    """The rows to evaluate and what the defaults are derived from."""

    rows: Dataset
    train: Dataset
    cache_key: str


def eval_data(recipe: Recipe, split: str, limit: int | None, tokenizer=None) -> EvalData:
    """The recipe's ``split`` exactly as training built it (`preprocess.build_dataset`), first
    ``limit`` rows; an unknown or empty split is a `UserError`."""
    from llmscisci_cfg.data.preprocess import build_dataset

    dataset, report = build_dataset(recipe, tokenizer=tokenizer)
    if split not in dataset:
        raise UserError(
            f"--split {split}: no such split; this recipe's splits: {', '.join(dataset)}"
        )
    rows = dataset[split]
    if len(rows) == 0:
        raise UserError(f"--split {split}: the split is empty; nothing to evaluate")
    rows = rows.select(range(min(limit, len(rows)))) if limit else rows
    return EvalData(rows=rows, train=dataset["train"], cache_key=report.cache_key)


def default_max_new_tokens(recipe: Recipe, train: Dataset, tokenizer) -> int:
    """GRPO: ``max_completion_length``, as in training. SFT/DPO: twice the longest training
    answer, at least 256 tokens, so a policy that rambles a little is not cut off mid-label."""
    if isinstance(recipe.method, GRPOMethod):
        return recipe.method.max_completion_length
    texts = [
        message["content"]
        for column in ANSWER_COLUMNS
        if column in train.column_names
        for answer in train[column]
        for message in answer
    ]
    if not texts:
        return MIN_MAX_NEW_TOKENS
    longest = max(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return max(MIN_MAX_NEW_TOKENS, 2 * longest)


def task_categories(recipe: Recipe) -> dict[str, list[str]]:
    """Ordered category names per aspect of the recipe's task (aspects the recipe uses)."""
    from llmscisci_cfg.task.spec import load_task

    task = load_task(recipe.data.task, recipe.source_dir, recipe.data.task_overrides)
    aspects = recipe.data.aspects or list(task.aspects)
    return {a: list(task.aspects[a].categories) for a in aspects}


# ----------------------------------------------------------------------------- models


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible")
    return device


def pick_dtype(recipe: Recipe, device: str) -> str:
    """The recipe's dtype; 'auto' is bfloat16 on CUDA and float32 on CPU (as in training)."""
    from llmscisci_cfg.train.compile import model_kwargs

    return model_kwargs(recipe, device)["dtype"]


def for_device(recipe: Recipe, device: str) -> Recipe:
    """``recipe`` set to load on ``device`` in one process; on CPU without quantization."""
    launch = recipe.launch.model_copy(update={"device": device, "num_processes": 1})
    model = recipe.model
    if device != "cuda" and model.quantization is not None:  # bitsandbytes wants CUDA
        model = model.model_copy(update={"quantization": None})
    copy = recipe.model_copy(update={"launch": launch, "model": model})
    copy._source_path = recipe.source_path
    return copy


def load_base(recipe: Recipe, device: str):
    """The recipe's base model as training loads it (`build.load_model`), in eval mode on ``device``.

    Built-in tiny models are rebuilt from ``train.seed``; a run's LoRA ``final/`` is merged.
    """
    from llmscisci_cfg.train.build import load_model
    from llmscisci_cfg.train.compile import compile_recipe

    recipe = for_device(recipe, device)
    model = load_model(recipe, compile_recipe(recipe, cuda=device == "cuda"))  # UserError if absent
    return _placed(model, device)


def load_policy(run: RunInfo, device: str):
    """``final/``: the adapter on the recipe's base, or the full model."""
    from llmscisci_cfg.train.build import load_pretrained
    from llmscisci_cfg.train.compile import compile_recipe

    if run.kind == "adapter":
        from peft import PeftModel

        base = load_base(run.recipe, device)
        return _placed(PeftModel.from_pretrained(base, str(run.final_dir)), device)
    recipe = for_device(run.recipe, device)
    model = load_pretrained(str(run.final_dir), compile_recipe(recipe, cuda=device == "cuda"))
    return _placed(model, device)


def _placed(model, device: str):
    if not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None:
        model = model.to(device)
    return model.eval()


def load_eval_tokenizer(recipe: Recipe, directory: Path | None = None):
    """The tokenizer with the training chat template: ``directory``'s when it has one, else the recipe's."""
    from llmscisci_cfg.models import chat

    if directory is not None and (directory / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        if getattr(tokenizer, "chat_template", None):
            return _ready(tokenizer)
    return _ready(chat.load_tokenizer(recipe))


def _ready(tokenizer):
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ----------------------------------------------------------------------------- generation


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end a completion: the model's and tokenizer's EOS and known end-of-turn tokens."""
    from llmscisci_cfg.models.tiny import END_OF_TURN

    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        ids += value if isinstance(value, list) else [value] if value is not None else []
    added = tokenizer.get_added_vocab()  # special tokens only, never a piece of plain text
    ids += [added[t] for t in END_OF_TURN if t in added]
    return list(dict.fromkeys(ids))


def generate(
    model, tokenizer, texts: list[str], *, batch_size: int, max_new_tokens: int, desc: str
) -> list[str]:
    """Greedy completions of ``texts`` (rendered prompts), in input order."""
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    stops = stop_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stops,
    )
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # longest first: OOM shows early
    out: list[str] = [""] * len(texts)
    device = next(model.parameters()).device
    with tqdm(total=len(texts), desc=desc, unit="ex") as bar, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in batch],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(device)
            ids = model.generate(**enc, generation_config=config)[:, enc["input_ids"].shape[1] :]
            for i, row in zip(batch, ids.tolist(), strict=True):
                out[i] = tokenizer.decode(_until_stop(row, stops), skip_special_tokens=False)
            bar.update(len(batch))
    return out


def _until_stop(ids: list[int], stops: list[int]) -> list[int]:
    cut = next((k for k, t in enumerate(ids) if t in stops), len(ids))
    return ids[:cut]


# ----------------------------------------------------------------------------- scoring


def score_rewards(
    recipe: Recipe, rows: Dataset, completions: list[str], tokenizer
) -> tuple[list[float | None], dict[str, list[float | None]]] | tuple[None, None]:
    """(weighted totals, per-reward values) under the recipe's reward stack, or (None, None).

    Scored as TRL and ``rewards test`` score (`rewards.testing.score`): every column and
    trainer argument passed, async plug-ins awaited, None values (NaN) left out of the total.
    """
    if not recipe.rewards:
        return None, None
    from llmscisci_cfg.rewards.compose import build_rewards, task_num_categories
    from llmscisci_cfg.rewards.testing import score

    columns = [c for c in rows.column_names if c not in _NOT_REWARD_COLUMNS]
    stack = build_rewards(
        recipe.rewards, recipe.source_dir, task_num_categories(recipe), tokenizer, columns
    )
    table = [
        {**{c: row[c] for c in columns}, "prompt": row["prompt"], "completion": _assistant(text)}
        for row, text in zip(rows, completions, strict=True)
    ]
    scored = score(stack, table)
    values = {
        name: [_none_if_nan(row[j]) for row in scored.scores] for j, name in enumerate(stack.names)
    }
    return [_none_if_nan(t) for t in scored.totals], values


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def predictions_for(
    label: str,
    recipe: Recipe,
    rows: Dataset,
    completions: list[str],
    tokenizer,
    n_of: dict[str, int],
) -> list[Prediction]:
    """One `Prediction` per row: the parsed label and the rewards of each completion."""
    totals, values = score_rewards(recipe, rows, completions, tokenizer)
    out = []
    for i, (row, text) in enumerate(zip(rows, completions, strict=True)):
        _, predicted = parse_completion(text, n_of[row["aspect"]])
        rewards = {k: float(v[i]) for k, v in (values or {}).items() if v[i] is not None}
        out.append(
            Prediction(
                id=row["id"],
                aspect=row["aspect"],
                model=label,
                gold=row["gold"],
                completion=text,
                predicted=predicted,
                reward=totals[i] if totals is not None else None,
                rewards=rewards,
            )
        )
    return out


@dataclass
class _Context:
    """What both models of one eval share."""

    recipe: Recipe
    rows: Dataset
    opts: EvalOptions
    device: str
    dtype: str
    max_new_tokens: int
    n_of: dict[str, int]
    same_split: bool | None
    predictions: list[Prediction] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, label: str, what: str, model, tokenizer, started: float) -> None:
        """Generate with ``model``, score, and record the results under ``label``."""
        from llmscisci_cfg.models import chat

        texts = [chat.render(tokenizer, p, add_generation_prompt=True) for p in self.rows["prompt"]]
        completions = generate(
            model,
            tokenizer,
            texts,
            batch_size=self.opts.batch_size,
            max_new_tokens=self.max_new_tokens,
            desc=label,
        )
        self.predictions += predictions_for(
            label, self.recipe, self.rows, completions, tokenizer, self.n_of
        )
        self.models[label] = what
        self.seconds[label] = round(time.perf_counter() - started, 2)

    def write(self, out: Path, run_dir: Path | None) -> EvalResult:
        meta = EvalMeta(
            recipe=self.recipe.name,
            run_dir=str(run_dir) if run_dir else None,
            split=self.opts.split,
            categories=task_categories(self.recipe),
            models=self.models,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.opts.batch_size,
            limit=self.opts.limit,
            device=self.device,
            dtype=self.dtype,
            reward_names=[r.label for r in self.recipe.rewards or []],
            seconds=self.seconds,
            split_matches_training=self.same_split,
        )
        report = eval_report.write_all(out, self.predictions, meta)
        return EvalResult(output_dir=out, report=report, meta=meta, files=eval_report.files(out))


def _context(recipe: Recipe, opts: EvalOptions, trained_key: str | None = None) -> _Context:
    from llmscisci_cfg.models import chat

    tokenizer = chat.load_tokenizer(recipe)
    data = eval_data(recipe, opts.split, opts.limit, tokenizer)
    if trained_key and data.cache_key != trained_key:
        print(
            "warning: the rebuilt dataset differs from the one this run trained on (data, task or "
            "tokenizer changed since); the held-out split may not be training's",
            file=sys.stderr,
        )
    device = pick_device(opts.device)
    return _Context(
        recipe=recipe,
        rows=data.rows,
        opts=opts,
        device=device,
        dtype=pick_dtype(recipe, device),
        max_new_tokens=opts.max_new_tokens or default_max_new_tokens(recipe, data.train, tokenizer),
        n_of={a: len(c) for a, c in task_categories(recipe).items()},
        same_split=None if trained_key is None else data.cache_key == trained_key,
    )


# ----------------------------------------------------------------------------- entry points


def evaluate_run(run_dir: str | Path, opts: EvalOptions) -> EvalResult:
    """Evaluate a run's ``final/`` (and the reference with ``opts.reference``); write the files."""
    run = open_run(run_dir)
    ctx = _context(run.recipe, opts, run.data_cache_key)
    started = time.perf_counter()
    policy = load_policy(run, ctx.device)
    tokenizer = load_eval_tokenizer(run.recipe, run.final_dir)
    ctx.add("policy", f"{run.final_dir} ({_describe_final(run)})", policy, tokenizer, started)
    if opts.reference:
        started = time.perf_counter()
        what = _describe_base(run.base_model, run.base_seed)
        ref_tokenizer = load_eval_tokenizer(run.recipe)
        if run.kind == "adapter":  # the base is already loaded: switch the adapter off
            with policy.disable_adapter():
                ctx.add("reference", what, policy, ref_tokenizer, started)
        else:
            del policy
            reference = load_base(run.recipe, ctx.device)
            ctx.add("reference", what, reference, ref_tokenizer, started)
    return ctx.write(
        Path(opts.output_dir) if opts.output_dir else run.run_dir / "eval", run.run_dir
    )


def evaluate_model(recipe: Recipe, model: str | None, opts: EvalOptions) -> EvalResult:
    """Zero-shot: ``model`` (default: the recipe's base) on the recipe's held-out split, no run."""
    ctx = _context(recipe, opts)
    name = model or recipe.model.name_or_path
    candidate = with_model(recipe, name)
    seed = recipe.train.seed
    started = time.perf_counter()
    policy = load_base(candidate, ctx.device)
    local = Path(name).expanduser()
    tokenizer = load_eval_tokenizer(candidate, local if local.is_dir() else None)
    what = f"{_describe_base(name, seed)}, zero-shot with the recipe's prompts"
    ctx.add("policy", what, policy, tokenizer, started)
    if opts.reference:
        del policy
        started = time.perf_counter()
        base = recipe.model.name_or_path
        reference = load_base(recipe, ctx.device)
        ctx.add(
            "reference", _describe_base(base, seed), reference, load_eval_tokenizer(recipe), started
        )
    out = Path(opts.output_dir) if opts.output_dir else default_zero_shot_dir(recipe, name)
    return ctx.write(out, None)


def with_model(recipe: Recipe, name: str) -> Recipe:
    """``recipe`` with another model (family re-inferred, no LoRA / quantization) for zero-shot use."""
    if name == recipe.model.name_or_path:
        return recipe
    model = recipe.model.model_copy(
        update={"name_or_path": name, "family": None, "lora": None, "quantization": None}
    )
    copy = recipe.model_copy(update={"model": model})
    copy._source_path = recipe.source_path
    return copy


def default_zero_shot_dir(recipe: Recipe, model: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.replace("builtin:", "")).strip("_.")
    return Path("eval") / recipe.name / (slug or "model")


def _describe_final(run: RunInfo) -> str:
    if run.kind == "adapter":
        return f"LoRA adapter over {_describe_base(run.base_model, run.base_seed)}"
    return "full model"


def _describe_base(name: str, seed: int | None) -> str:
    return f"{name} (weights from seed {seed})" if name.startswith("builtin:") else name
