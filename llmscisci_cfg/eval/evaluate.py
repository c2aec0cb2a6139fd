"""``llmscisci eval``: generate on the held-out split with the policy (and references), score it.

Two entry points:

- `evaluate_run`: a run directory. The policy is ``final/`` (a LoRA adapter on its base, or a
  full model); each reference (`eval.references`: the recipe's model, for an adapter the same
  weights with the adapter switched off; the untrained ``base`` of the recipe chain; another
  run or model directory) answers the same prompts after it. The split is rebuilt by `data.preprocess.build_dataset` from
  ``recipe.resolved.yaml``: same task, template, filters and seed as training.
- `evaluate_model`: a recipe and any model name or directory, with no run: the model's
  in-context zero-shot result on the recipe's held-out split (the research's labelling study).

Models open through `models.load.open_model` (a run brings the chat template it was trained
with), engines come from `models.engines` under the recipe's resolved generation spec
(`Job.generation`: backend, sampling, token budget, batch size, the task's answer grammar):
exactly what `predict` and `serve` generate with. Rewards are scored by `rewards.score`; files
are written by `eval.report.write_all`. The recipe is resolved once, the reward stack built
once.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.digest import content_sha256
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.eval import report as eval_report
from llmscisci_cfg.eval.references import (
    Reference,
    describe_model,
    load_reference,
    reference_settings,
    resolve_references,
    with_model,
)
from llmscisci_cfg.eval.report import EvalMeta, Prediction, json_value, kinds_meta
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.runs.rundir import RunDir, RunLock, claim, write_json
from llmscisci_cfg.task.kinds import LabelKind, read_answer

if TYPE_CHECKING:
    from datasets import Dataset

    from llmscisci_cfg.models.generate import Engine
    from llmscisci_cfg.models.genspec import GenSpec
    from llmscisci_cfg.models.load import Opened
    from llmscisci_cfg.rewards.compose import RewardStack


@dataclass(frozen=True)
class EvalOptions:
    """The knobs of one eval (the CLI flags); generation settings are ``generation.*``
    overrides of the recipe (``--set``, ``--max-new-tokens``, ``--batch-size``)."""

    split: str = "test"
    references: tuple[str, ...] = ()  # --reference values: "reference", "base" or a directory
    limit: int | None = None
    output_dir: Path | None = None
    device: str = "auto"
    overwrite: bool = False  # replace another evaluation's files in output_dir
    overrides: tuple[str, ...] = ()  # generation.* (and template.override) for a run


@dataclass
class EvalResult:
    output_dir: Path
    report: dict[str, Any]
    meta: EvalMeta
    files: list[Path] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # names written into output_dir


# ----------------------------------------------------------------------------- inputs


@dataclass
class EvalData:
    """The rows to evaluate and what the defaults are derived from."""

    rows: Dataset
    train: Dataset
    cache_key: str
    test_set_sha256: str | None = None  # `preprocess.held_out_sha256`; None for another split
    report: Any = None  # the data stage's `BuildReport` (the methods section reads it)


def eval_data(job: Job, split: str, limit: int | None, tokenizer) -> EvalData:
    """The job's ``split`` exactly as training built it (`data.preprocess.build_dataset`), first
    ``limit`` rows; an unknown or empty split is a `UserError`."""
    from llmscisci_cfg.data.preprocess import build_dataset
    from llmscisci_cfg.train import methods

    dataset, report = build_dataset(job, methods.get(job.method), tokenizer=tokenizer)
    if split not in dataset:
        raise UserError(
            f"--split {split}: no such split; this recipe's splits: {', '.join(dataset)}"
        )
    rows = dataset[split]
    if len(rows) == 0:
        raise UserError(f"--split {split}: the split is empty; nothing to evaluate")
    rows = rows.select(range(min(limit, len(rows)))) if limit else rows
    sha = (report.test_set_sha256 or None) if split == "test" else None
    return EvalData(rows, dataset["train"], report.cache_key, sha, report)


def require_same_test_set(policy: str, policy_sha: str | None, other: str, other_sha: str | None):
    """Refuse (a `UserError`) to put ``other`` beside ``policy`` when their test sets differ:
    other documents, aspects, gold labels or section texts (`preprocess.held_out_sha256`). A
    run trained on another split may have trained on the policy's test documents."""
    if policy_sha and other_sha and policy_sha != other_sha:
        raise UserError(
            f"{other} and {policy} have different test sets (test-set sha256 {other_sha} and "
            f"{policy_sha}): their recipes differ in the data file, the split seed or fraction, "
            "data.aspects, data.clean, the over-long examples excluded, or in what their method "
            "drops (DPO: pairs without a usable chosen/rejected answer, e.g. identical ones; "
            "`llmscisci preprocess` of each recipe shows the drops), so their results cannot be "
            "put side by side; evaluate runs whose recipes and methods keep the same test examples"
        )


def run_test_set_sha256(run: RunDir, split: str = "test") -> str | None:
    """The test-set sha256 of a run's recipe, rebuilt as eval builds it (the cached build,
    under the run's own tokenizer)."""
    from llmscisci_cfg.models.load import open_tokenizer
    from llmscisci_cfg.models.refs import named_model

    job = run.job()
    tokenizer, _ = open_tokenizer(named_model(str(run.path)), job.template)
    return eval_data(job, split, None, tokenizer).test_set_sha256


def check_reference_runs(policy: str, policy_sha: str | None, refs: list[Reference]) -> None:
    """Before any model loads: refuse a run reference whose recipe holds out another test set
    than the policy's (`require_same_test_set`)."""
    for ref in refs:
        if ref.kind == "run" and ref.run_dir is not None and policy_sha:
            other = run_test_set_sha256(RunDir.open(ref.run_dir))
            require_same_test_set(policy, policy_sha, f"reference run {ref.run_dir}", other)


# ----------------------------------------------------------------------------- scoring


def reward_stack(job: Job, rows: Dataset, tokenizer) -> RewardStack | None:
    """The recipe's reward stack for scoring eval completions, or None without rewards."""
    if not job.recipe.rewards:
        return None
    from llmscisci_cfg.rewards.compose import build_rewards

    columns = reward_columns(rows)
    return build_rewards(
        job.recipe.rewards,
        job.source_dir,
        job.label_kinds,
        tokenizer,
        columns,
    )


def reward_columns(rows: Dataset) -> list[str]:
    """The columns a reward may read: every column but the prompt and the training methods'
    own (answer columns and their labels, `TrainingMethod.answer_columns`/``extra_columns``;
    the completion scored is the model's)."""
    from llmscisci_cfg.train import methods

    own = {"prompt", "completion"}
    for method in methods.REGISTRY.values():
        own |= {*method.answer_columns, *method.extra_columns}
    return [c for c in rows.column_names if c not in own]


def score_rewards(
    stack: RewardStack | None, rows: Dataset, completions: list[str]
) -> tuple[list[float | None], dict[str, list[float | None]]] | tuple[None, None]:
    """(weighted totals, per-reward values) under ``stack``, or (None, None) without one.

    Scored as TRL and ``rewards test`` score (`rewards.score.score`): every column and
    trainer argument passed, async plug-ins awaited, None values (NaN) left out of the total.
    """
    if stack is None:
        return None, None
    from llmscisci_cfg.rewards.score import score

    columns = reward_columns(rows)
    table = [
        {**{c: row[c] for c in columns}, "prompt": row["prompt"], "completion": _assistant(text)}
        for row, text in zip(rows, completions, strict=True)
    ]
    scored = score(stack, table)
    values = {
        name: [_none_if_nan(row[j]) for row in scored.scores] for j, name in enumerate(stack.names)
    }
    return [_none_if_nan(t) for t in scored.totals], values


def input_text(prompt: list[dict[str, str]]) -> str:
    """The section a prompt asks about: the user message's ``<text>…</text>``, else all of it."""
    user = next((m["content"] for m in prompt if m["role"] == "user"), "")
    found = _TEXT_BLOCK.search(user)
    return found.group(1) if found else user


_TEXT_BLOCK = re.compile(r"<text>(.*?)</text>", re.DOTALL)


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def predictions_for(
    label: str,
    stack: RewardStack | None,
    rows: Dataset,
    completions: list[str],
    kinds: Mapping[str, LabelKind],
) -> list[Prediction]:
    """One `Prediction` per row: the answer read by the aspect's kind and the rewards of each
    completion.

    ``kinds``: each aspect's answer kind (`TaskSpec.label_kind`). ``gold`` and ``predicted``
    are values of that kind (single: the category's index; multi: the one-hot list;
    dimensions: a level per dimension), scored by `eval.metrics` kind by kind; a label that
    does not parse, or breaks the task's label constraints, is None (invalid)."""
    totals, values = score_rewards(stack, rows, completions)
    out = []
    for i, (row, text) in enumerate(zip(rows, completions, strict=True)):
        kind = kinds[row["aspect"]]
        rewards = {k: float(v[i]) for k, v in (values or {}).items() if v[i] is not None}
        out.append(
            Prediction(
                id=row["id"],
                aspect=row["aspect"],
                model=label,
                gold=json_value(row["gold"]),
                completion=text,
                predicted=json_value(read_answer(text, kind).value),
                reward=totals[i] if totals is not None else None,
                rewards=rewards,
            )
        )
    return out


@dataclass
class _Context:
    """What every model of one eval shares: the job, the rows, the options, the reward stack."""

    job: Job
    rows: Dataset
    opts: EvalOptions
    device: str
    same_split: bool | None
    stack: RewardStack | None
    test_set_sha256: str | None = None
    data_report: Any = None
    references: list[Reference] = field(default_factory=list)
    policy_model: str | None = None  # zero-shot: the model evaluated (a run: its final/)
    predictions: list[Prediction] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    generation: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def gen(self) -> GenSpec:
        return self.job.generation

    def add(self, label: str, what: str, engine: Engine, opened: Opened, started: float) -> None:
        """Generate through ``engine`` (the recipe's generation spec), score, record."""
        from llmscisci_cfg.eval.report import excerpt
        from llmscisci_cfg.models.generate import Request

        gen = self.gen
        prompts, aspects = self.rows["prompt"], self.rows["aspect"]
        requests = [
            Request(messages=p, sampling=gen.sampling, constraint=gen.constraint(a))
            for p, a in zip(prompts, aspects, strict=True)
        ]
        completions = [c[0].text for c in engine.generate(requests, desc=label)]
        kinds = {a: self.job.task.label_kind(a) for a in self.job.aspects}
        predictions = predictions_for(label, self.stack, self.rows, completions, kinds)
        for prediction, prompt in zip(predictions, prompts, strict=True):
            prediction.prompt_excerpt = excerpt(input_text(prompt))
        self.predictions += predictions
        self.models[label] = what
        self.seconds[label] = round(time.perf_counter() - started, 2)
        self.generation[label] = engine.stats.as_dict()
        self.templates[label] = {"name": opened.template.name, "sha256": opened.template.sha256}

    def write(self, out: Path, run: RunDir | None) -> EvalResult:
        from llmscisci_cfg.eval import methods

        gen = self.gen
        run_dir = run.path if run is not None else None
        meta = EvalMeta(
            recipe=self.job.name,
            run_dir=str(run_dir) if run_dir else None,
            split=self.opts.split,
            categories=self.job.categories,
            models=self.models,
            max_new_tokens=gen.sampling.max_new_tokens,
            batch_size=gen.batch_size,
            limit=self.opts.limit,
            device=self.device,
            dtype=self.job.recipe.model.dtype,
            reward_names=[r.label for r in self.job.recipe.rewards or []],
            seconds=self.seconds,
            split_matches_training=self.same_split,
            generation=self.generation,
            test_set_sha256=self.test_set_sha256,
            label_constraints={
                a: r.describe() for a, r in (self.job.task.label_rules() or {}).items() if r
            }
            or None,
            decoding=gen.describe(),
            chat_templates=self.templates,
            kinds=kinds_meta({a: self.job.task.label_kind(a) for a in self.job.aspects}),
        )
        meta.methods = methods.facts(
            self.job,
            run=run,
            data_report=self.data_report,
            models=self.models,
            references=self.references,
            chat_templates=self.templates,
            decoding=meta.decoding,
            split=self.opts.split,
            limit=self.opts.limit,
            policy_model=self.policy_model,
        )
        report = eval_report.write_all(out, self.predictions, meta)
        written = mark_output_dir(out, str(run_dir) if run_dir else self.job.name)
        files = eval_report.files(out)
        return EvalResult(out, report, meta, files=files, written=written)


def _context(job: Job, opts: EvalOptions, tokenizer, trained_key: str | None = None) -> _Context:
    data = eval_data(job, opts.split, opts.limit, tokenizer)
    if trained_key and data.cache_key != trained_key:
        print(
            "warning: the rebuilt dataset differs from the one this run trained on (data, task or "
            "tokenizer changed since); the held-out split may not be training's",
            file=sys.stderr,
        )
    device = opts.device
    if job.generation.backend == "transformers":
        from llmscisci_cfg.models.load import pick_device

        device = pick_device(opts.device)
    return _Context(
        job=job,
        rows=data.rows,
        opts=opts,
        device=device,
        same_split=None if trained_key is None else data.cache_key == trained_key,
        stack=reward_stack(job, data.rows, tokenizer),
        test_set_sha256=data.test_set_sha256,
        data_report=data.report,
    )


def _require_local_references(job: Job, refs: list[Reference]) -> None:
    if refs and job.generation.backend != "transformers":
        raise UserError(
            f"--reference: references are local models, generated with generation.backend: "
            f"transformers; this eval generates through {job.generation.backend}"
        )


# ----------------------------------------------------------------------------- entry points


#: Written by eval beside its files: which evaluation they are and their sha256, so that a
#: later eval replaces exactly what an eval wrote (`check_output_dir`).
EVAL_MARKER = ".llmscisci-eval.json"
_MARKER_FORMAT = "llmscisci.eval/1"


def check_output_dir(out: Path, source: str, overwrite: bool) -> None:
    """Refuse (before anything is generated) to write into a folder holding another
    evaluation's files (``source``: the run directory or recipe evaluated), files an eval did
    not write (files with our names included: another tool's or a person's, or ours edited
    since, as `EVAL_MARKER` records them) or files that are not an evaluation's, unless
    ``overwrite``; never write into a file, a folder or a symbolic link."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{out}: not a directory; choose another --output-dir")
    if not out.is_dir():
        return
    targets = [p for p in eval_report.files(out) if p.is_symlink() or p.exists()]
    odd = [p.name for p in targets if p.is_symlink() or not p.is_file()]
    if odd:
        raise UserError(
            f"{out}: {', '.join(odd)} is a symbolic link or a folder, which eval does not write "
            "through; choose another --output-dir"
        )
    if not any(out.iterdir()) or overwrite:
        return
    marker = _read_marker(out)
    ours = {EVAL_MARKER} if marker else set()
    for name, sha in (marker or {}).get("files", {}).items():
        path = out / name
        if path.is_file() and not path.is_symlink() and content_sha256(path) == sha:
            ours.add(name)
    names = {p.name for p in eval_report.files(out)}
    theirs = sorted(p.name for p in out.iterdir() if p.name not in ours)
    foreign = [n for n in theirs if n not in names]
    if foreign:
        raise UserError(
            f"{out}: holds files that are not an evaluation's ({', '.join(foreign[:5])}); choose "
            "another --output-dir"
        )
    if marker and not _same_source(marker["source"], source):
        raise UserError(
            f"{out}: holds the evaluation of {marker['source']}, not of {source}; pass "
            "--overwrite to replace it, or choose another --output-dir"
        )
    if theirs:
        raise UserError(
            f"{out}: holds {', '.join(theirs)}, which llmscisci eval did not write there (or "
            "which changed since); pass --overwrite to replace them, or choose another "
            "--output-dir"
        )


def _read_marker(out: Path) -> dict[str, Any] | None:
    """`EVAL_MARKER` of ``out`` when it is valid: a format, a source, file name -> sha256."""
    path = out / EVAL_MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    files = data.get("files")
    if (
        data.get("format") != _MARKER_FORMAT
        or not isinstance(data.get("source"), str)
        or not isinstance(files, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        return None
    return data


def _same_source(before: str, now: str) -> bool:
    """The same run directory (however spelled) or the same recipe name."""
    if before == now:
        return True
    a, b = Path(before), Path(now)
    return a.is_dir() and b.is_dir() and a.resolve() == b.resolve()


def mark_output_dir(out: Path, source: str) -> list[str]:
    """Record the files eval just wrote into ``out`` (`EVAL_MARKER`); return their names,
    the marker's included."""
    files = {p.name: content_sha256(p) for p in eval_report.files(out) if p.is_file()}
    write_json(out / EVAL_MARKER, {"format": _MARKER_FORMAT, "source": source, "files": files})
    return [*files, EVAL_MARKER]


def evaluate_run(run_dir: str | Path, opts: EvalOptions) -> EvalResult:
    """Evaluate a run's ``final/`` (and each of ``opts.references``); write the files.

    Writing into the run directory (the default ``RUN_DIR/eval``) holds the run's lock."""
    run = RunDir.open(run_dir, hint="or use `eval --recipe RECIPE --model NAME_OR_DIR`")
    run.require_final()
    out = Path(opts.output_dir) if opts.output_dir else run.path / "eval"
    check_output_dir(out, str(run.path), opts.overwrite)
    inside = out.resolve().is_relative_to(run.path.resolve())
    with RunLock(run.path) if inside else contextlib.nullcontext():
        result = _evaluate_run(run, opts, out)
        if inside:  # the run's own evaluation: in the run's inventory; the card gets the summary
            rel = out.resolve().relative_to(run.path.resolve()).as_posix()
            claim(run.path, [f"{rel}/{name}" for name in result.written])
            _update_card(run, result, out)
        return result


def _update_card(run: RunDir, result: EvalResult, out: Path) -> None:
    from llmscisci_cfg.runs.card import write_card

    meta = result.meta
    rep = result.report
    boot = rep["bootstrap"]
    part = f" (its first {meta.limit} examples only)" if meta.limit else ""
    warnings = "".join(f"\n- **warning**: {w['message']}" for w in rep["warnings"])
    summary = (
        f"`llmscisci eval` on the {meta.split} split{part}, test set sha256 "
        f"`{meta.test_set_sha256}`; {rep['kind']} answers, an invalid answer counted as wrong; "
        f"point estimates with 95% {eval_report.stats_method_text(boot['method'])} intervals "
        f"over {boot['documents']} documents ({boot['resamples']} resamples); full report "
        f"(methods, per-category scores, paired tests): "
        f"`{out.resolve().relative_to(run.path.resolve())}/report.md`.\n\n"
        f"```\n{eval_report.summary_table(rep)}\n```" + (f"\n{warnings}" if warnings else "")
    )
    write_card(run.path, run.manifest, eval_summary=summary)


def run_job(run: RunDir, overrides: tuple[str, ...] = ()) -> Job:
    """The run's recipe with ``overrides`` (only ``generation.*`` and ``template.override``:
    anything else would change what the run's split and model are)."""
    from llmscisci_cfg.recipe.loader import load_job

    wrong = [o for o in overrides if not o.startswith(("generation.", "template.override"))]
    if wrong:
        raise UserError(
            f"--set {wrong[0]}: eval of a run directory takes generation.* settings only (its "
            "model, data and split are the run's); use `eval --recipe` for other changes"
        )
    return load_job(run.resolved, overrides, run_dir=run.path)


def _evaluate_run(run: RunDir, opts: EvalOptions, out: Path) -> EvalResult:
    from llmscisci_cfg.models.engines import make_engine, open_engine, tokenizer_only
    from llmscisci_cfg.models.load import open_model
    from llmscisci_cfg.models.refs import named_model

    job = run_job(run, opts.overrides)
    refs = resolve_references(opts.references, job)
    _require_local_references(job, refs)
    policy_ref = named_model(str(run.path))
    local = job.generation.backend == "transformers"
    opened = tokenizer_only(policy_ref, job.template, local, base=job.model)
    ctx = _context(job, opts, opened.tokenizer, run.data_cache_key)
    ctx.references = refs
    check_reference_runs(f"run {run.path}", ctx.test_set_sha256, refs)
    started = time.perf_counter()
    engine, opened = open_engine(
        job.generation, policy_ref, job.template, job.recipe.model, opts.device
    )
    ctx.add("policy", f"{run.final_dir} ({_describe_final(run)})", engine, opened, started)
    adapter = opened.adapter
    policy = opened.model
    for i, ref in enumerate(refs):
        started = time.perf_counter()
        if adapter and ref.is_recipe_model:  # the base is loaded: switch the adapter off
            with policy.disable_adapter():
                ctx.add(ref.label, ref.what, make_engine(job.generation, opened), opened, started)
            continue
        if not (adapter and any(r.is_recipe_model for r in refs[i:])):
            policy = opened.model = None  # no later reference needs it: free it first
            engine = None
        other = open_model(*load_reference(ref, job), ctx.device, reference_settings(job, ref))
        ctx.add(ref.label, ref.what, make_engine(job.generation, other), other, started)
        del other
    return ctx.write(out, run)


def evaluate_model(job: Job, model: str | None, opts: EvalOptions) -> EvalResult:
    """Zero-shot: ``model`` (default: the recipe's base) on the job's held-out split, no run."""
    from llmscisci_cfg.models.engines import make_engine, open_engine, tokenizer_only
    from llmscisci_cfg.models.load import open_model

    name = model or job.model.name
    out = Path(opts.output_dir) if opts.output_dir else default_zero_shot_dir(job.recipe, name)
    check_output_dir(out, job.name, opts.overwrite)
    refs = resolve_references(opts.references, job)
    _require_local_references(job, refs)
    candidate = with_model(job, name)
    local = job.generation.backend == "transformers"
    ctx = _context(job, opts, tokenizer_only(candidate.model, job.template, local).tokenizer)
    ctx.references, ctx.policy_model = refs, name
    check_reference_runs(f"recipe {job.name}", ctx.test_set_sha256, refs)
    started = time.perf_counter()
    engine, opened = open_engine(
        job.generation, candidate.model, job.template, candidate.recipe.model, opts.device
    )
    what = f"{describe_model(name, job.recipe.train.seed)}, zero-shot with the recipe's prompts"
    if job.generation.backend == "openai":
        what = f"{job.generation.remote.model} at {job.generation.remote.base_url}, zero-shot"
    ctx.add("policy", what, engine, opened, started)
    del engine, opened
    for ref in refs:
        started = time.perf_counter()
        other = open_model(*load_reference(ref, job), ctx.device, reference_settings(job, ref))
        ctx.add(ref.label, ref.what, make_engine(job.generation, other), other, started)
        del other
    return ctx.write(out, None)


def default_zero_shot_dir(recipe: Recipe, model: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.replace("builtin:", "")).strip("_.")
    return Path("eval") / recipe.name / (slug or "model")


def _describe_final(run: RunDir) -> str:
    final = run.final
    if final.kind == "adapter":
        return f"LoRA adapter over {describe_model(final.base_model, final.base_seed)}"
    return "full model"
