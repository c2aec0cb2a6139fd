"""The methods section of an eval report: the facts (``report.json["methods"]``) and the
paragraph that states them (``report.md`` opens with it), ready to paste into a paper.

`facts` gathers, once, from the resolved `Job`, the run's manifest (when a run is evaluated)
and the data stage's build report:

- the task and its codebook (name, file sha256, answer kind, categories / dimensions and
  levels per aspect) and the prompts, verbatim (system and user templates, and each aspect's
  prompts as rendered with the section text left as a placeholder; the appendix of the report
  shows them) with their sha256;
- the models: for a trained policy its base (hub id + revision and commit, a built-in's seed,
  or local weights' sha256) and the sha256 of its own weights; for each reference the same;
  each model's chat template (name, sha256);
- decoding (`GenSpec.describe`: backend, sampling, token budget, the answer constraint);
- the data: file and sha256, rows read, examples, drops by reason, cleaning and truncation
  counts per split and aspect, the length filter, documents per split, the test set's sha256;
- the split rule and its seed; the training method and its hyperparameters (TRL config
  values that differ from TRL's defaults, LoRA and quantization, rewards) and seed;
- the statistics: metrics, interval method, resamples and unit, paired tests, conventions;
- the tool's version and source commit, and library versions.

The paragraph is written from those facts only, so the JSON and the text never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmscisci_cfg.eval.references import Reference
    from llmscisci_cfg.recipe.resolve import Job
    from llmscisci_cfg.runs.rundir import RunDir

TEXT_PLACEHOLDER = "[section text]"
#: The hyperparameters the paragraph names for every method (all of them are in
#: ``methods.training``), then the method's own (`TrainingMethod.hyperparameters`).
KEY_HYPERPARAMETERS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "lr_scheduler_type", "warmup_steps", "warmup_ratio",
    "weight_decay",
)  # fmt: skip


def key_hyperparameters(method: str | None) -> tuple[str, ...]:
    """The hyperparameters the paragraph names for ``method`` (a method this version does not
    know: every method's)."""
    from llmscisci_cfg.train import methods

    found = methods.find(method)
    known = [found] if found is not None else methods.REGISTRY.values()
    own = dict.fromkeys(k for m in known for k in m.hyperparameters)
    return KEY_HYPERPARAMETERS + tuple(own)


#: How an invalid answer counts, in a few words.
INVALID_SHORT = {
    "single": "a missing, invalid or unknown answer counts as wrong",
    "multi": "a missing or invalid answer counts as wrong in every category (the complement of gold)",
    "dimensions": "a missing or invalid answer counts as wrong in every dimension",
}
#: TRL config values left out of the hyperparameters (paths and logging, not the method).
_NOT_HYPERPARAMETERS = {"output_dir", "logging_dir", "report_to", "run_name", "logging_steps",
                        "save_steps", "save_strategy", "save_total_limit", "disable_tqdm"}  # fmt: skip


# ----------------------------------------------------------------------------- facts


def facts(
    job: Job,
    *,
    run: RunDir | None,
    data_report: Any,
    models: Mapping[str, str],
    references: list[Reference],
    chat_templates: Mapping[str, Mapping[str, Any]],
    decoding: Mapping[str, Any] | None,
    split: str,
    limit: int | None,
    policy_model: str | None = None,
) -> dict[str, Any]:
    """Every fact of the methods paragraph (module docstring); ``policy_model``: the model a
    zero-shot eval (no run) evaluated."""
    from llmscisci_cfg.runs.manifest import task_info, tool_info, versions

    manifest = run.manifest if run is not None else {}
    return {
        "task": _task(job, manifest.get("task") or task_info(job)),
        "prompts": prompts(job),
        "models": _models(job, run, models, references, chat_templates, policy_model),
        "decoding": dict(decoding or {}),
        "data": _data(job, data_report, split, limit),
        "split": _split(job),
        "training": _training(manifest) if run is not None else None,
        "tool": manifest.get("tool") or tool_info(),
        "versions": manifest.get("versions") or versions(),
    }


def _task(job: Job, info: Mapping[str, Any]) -> dict[str, Any]:
    task = job.task
    aspects = {}
    for a in job.aspects:
        kind = task.label_kind(a)
        entry: dict[str, Any] = {"categories": list(kind.categories)}
        if kind.kind == "dimensions":
            entry["levels"] = list(kind.levels)
        aspects[a] = entry
    return {
        "name": task.name,
        "description": task.description,
        "ref": info.get("ref"),
        "sha256": info.get("sha256"),
        "answer": task.answer,
        "aspects": aspects,
        "overrides": info.get("overrides") or [],
    }


def prompts(job: Job) -> dict[str, Any]:
    """The prompt templates verbatim, their sha256, and each aspect's rendered messages with
    the section text left as `TEXT_PLACEHOLDER`."""
    from llmscisci_cfg.digest import text_sha256

    task = job.task
    rendered = {}
    for a in job.aspects:
        try:
            rendered[a] = task.messages(a, TEXT_PLACEHOLDER)
        except Exception:  # a prompt needing more than the text (judge, rationale): templates only
            rendered[a] = None
    return {
        "system_template": task.system_prompt,
        "user_template": task.user_prompt,
        "system_sha256": text_sha256(task.system_prompt),
        "user_sha256": text_sha256(task.user_prompt),
        "rendered": rendered,
    }


def _models(job, run, models, references, chat_templates, policy_model) -> dict[str, Any]:
    from llmscisci_cfg.runs.manifest import parent_model, weights_sha256

    out: dict[str, Any] = {}
    by_label = {r.label: r for r in references}
    for label, what in models.items():
        entry: dict[str, Any] = {"what": what, "chat_template": dict(chat_templates.get(label, {}))}
        if label == "policy" and run is not None:
            entry["base"] = run.manifest.get("parent_model")
            entry["weights_sha256"] = weights_sha256(run.final_dir)
            entry["kind"] = "trained"
        elif label == "policy":
            entry["identity"] = _identity(policy_model or job.model.name, job.recipe.train.seed)
            if job.generation.backend == "openai" and job.generation.remote is not None:
                entry["identity"] = {
                    "kind": "server",
                    "model": job.generation.remote.model,
                    "base_url": job.generation.remote.base_url,
                }
        elif label in by_label:
            ref = by_label[label]
            if ref.kind == "recipe":
                entry["identity"] = parent_model(job)
            elif ref.kind == "run" and ref.run_dir is not None:
                entry["identity"] = _identity(str(ref.run_dir / "final"), None)
            else:
                entry["identity"] = _identity(ref.model, ref.seed)
        out[label] = entry
    return out


def _identity(name: str, seed: int | None) -> dict[str, Any]:
    """How another researcher gets the same weights: a built-in and its seed, local weights'
    sha256, or a hub id with the commit the local hub cache resolves ``main`` to."""
    from pathlib import Path

    from llmscisci_cfg.runs.manifest import hub_commit, weights_sha256

    if name.startswith("builtin:"):
        return {"kind": "builtin", "id": name, "seed": seed}
    folder = Path(name)
    if folder.is_dir():
        if (folder / "final").is_dir():
            folder = folder / "final"
        return {"kind": "local", "path": str(folder), "weights_sha256": weights_sha256(folder)}
    return {"kind": "hub", "id": name, "revision": "main", "commit": hub_commit(name, None)}


def _data(job: Job, report: Any, split: str, limit: int | None) -> dict[str, Any]:
    get = (lambda k, d=None: getattr(report, k, d)) if report is not None else (lambda k, d=None: d)
    labels = job.labels
    return {
        "file": job.data.ref,
        "sha256": job.data.sha256,
        "labels": {"file": labels.ref, "sha256": labels.sha256} if labels is not None else None,
        "rows": get("rows"),
        "examples": get("examples"),
        "splits": dict(get("splits", {}) or {}),
        "documents": dict(get("documents", {}) or {}),
        "dropped": {k: n for k, n in (get("dropped", {}) or {}).items() if n},
        "cleaning": dict(get("cleaning", {}) or {}),
        "length_filter": _length_filter(job, get("length", {}) or {}, get("length_limits", {})),
        "evaluated_split": split,
        "limit": limit,
        "test_set_sha256": get("test_set_sha256") or None,
    }


def _length_filter(job: Job, length: Mapping[str, Any], limits: Any) -> dict[str, Any]:
    spec = getattr(job.recipe.data, "length_filter", None)
    return {
        "settings": spec.model_dump(mode="json") if spec is not None else None,
        "limits": dict(limits or {}),
        "strategy": length.get("strategy"),
        "per_split": length.get("splits", {}),
    }


def _split(job: Job) -> dict[str, Any]:
    if job.splits:  # data.splits: the files are the splits, as the study ships them
        return {
            "rule": "fixed split files, as given",
            "files": {name: {"file": f.ref, "sha256": f.sha256} for name, f in job.splits.items()},
        }
    spec = getattr(job.recipe.data, "split", None)
    settings = spec.model_dump(mode="json") if spec is not None else {}
    seed = settings.get("seed")
    return {
        "rule": "by document: every example of a document is on the same side",
        "settings": settings,
        "seed": seed if seed is not None else job.recipe.train.seed,
        "seed_from": "data.split.seed" if seed is not None else "train.seed",
    }


def _training(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    compiled = manifest.get("compiled") or {}
    if not compiled:
        return None
    changed = compiled.get("changed_kwargs") or compiled.get("config_kwargs") or {}
    return {
        "method": compiled.get("method"),
        "trainer": compiled.get("trainer_class"),
        "hyperparameters": {k: v for k, v in changed.items() if k not in _NOT_HYPERPARAMETERS},
        "lora": compiled.get("lora_kwargs"),
        "quantization": compiled.get("bnb_kwargs"),
        "rewards": [
            {"name": r.get("label"), "weight": r.get("weight"), "params": r.get("params")}
            for r in manifest.get("rewards") or []
        ],
        "seed": manifest.get("seed"),
        "device": manifest.get("device"),
        "processes": manifest.get("num_processes"),
        "train_seconds": manifest.get("train_seconds"),
    }


# ----------------------------------------------------------------------------- text


def section(rep: Mapping[str, Any], meta: Any) -> list[str]:
    """``## Methods``: the paragraph, from ``rep["methods"]`` (nothing when it is absent)."""
    found = rep.get("methods")
    if not found:
        return []
    return ["## Methods", "", paragraph(rep, found), ""]


def paragraph(rep: Mapping[str, Any], f: Mapping[str, Any]) -> str:
    """The methods paragraph."""
    task, data, split = f["task"], f["data"], f["split"]
    kind = task["answer"]
    sentences = [_task_sentence(task), _data_sentence(data, split)]
    sentences.append(_models_sentence(f["models"], f.get("training")))
    sentences.append(_prompt_sentence(f))
    sentences.append(_decoding_sentence(f["decoding"]))
    sentences.append(_statistics_sentence(rep, kind))
    tool = f.get("tool") or {}
    libs = ", ".join(
        f"{k} {v}" for k, v in (f.get("versions") or {}).items() if v and k != "llmscisci_cfg"
    )
    sentences.append(
        f"Software: llmscisci {tool.get('version', '?')} (commit {_short(tool.get('commit'))}"
        f"{', with uncommitted changes' if tool.get('dirty') else ''}); {libs}."
    )
    return " ".join(s for s in sentences if s)


def _task_sentence(task: Mapping[str, Any]) -> str:
    what = {
        "single": "one category per example",
        "multi": "a set of categories per example (a one-hot list)",
        "dimensions": "for each dimension, absent or one level",
    }[task["answer"]]
    books = []
    for aspect, entry in task["aspects"].items():
        noun = "dimensions" if task["answer"] == "dimensions" else "categories"
        names = entry["categories"]
        shown = (
            "; ".join(names)
            if len(names) <= 8
            else f"{'; '.join(names[:6])}; … ({len(names)} in all)"
        )
        levels = f", levels {', '.join(entry['levels'])}" if entry.get("levels") else ""
        books.append(f"{aspect}: {len(names)} {noun} ({shown}{levels})")
    overrides = (
        f", with overrides of {', '.join(task['overrides'])}" if task.get("overrides") else ""
    )
    return (
        f"Task: {task['name']} (task file {task.get('ref')}, sha256 {_short(task.get('sha256'))}"
        f"{overrides}); the answer is {what}. Codebook: " + "; ".join(books) + "."
    )


def _data_sentence(data: Mapping[str, Any], split: Mapping[str, Any]) -> str:
    files = split.get("files")
    where = (
        "the split files "
        + ", ".join(f"{s} {f['file']} (sha256 {_short(f['sha256'])})" for s, f in files.items())
        if files
        else f"{data['file']} (sha256 {_short(data['sha256'])})"
    )
    parts = [f"Data: {where}, {data.get('rows')} rows read, {data.get('examples')} examples built"]
    labels = data.get("labels")
    if labels:
        parts.append(
            f"gold labels joined on the id from {labels['file']} (sha256 {_short(labels['sha256'])})"
        )
    dropped = data.get("dropped") or {}
    if dropped:
        parts.append(
            "dropped: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in dropped.items())
        )
    cleaning = data.get("cleaning") or {}
    if cleaning:
        parts.append(
            "cleaning changed "
            + ", ".join(
                f"{c.get('changed', 0)} of {c.get('sections', 0)} {a} sections"
                for a, c in cleaning.items()
            )
        )
    lf = data.get("length_filter") or {}
    if lf.get("strategy"):
        touched = [
            f"{s} {a}: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in counts.items() if n)
            for s, aspects in (lf.get("per_split") or {}).items()
            for a, counts in aspects.items()
            if any(counts.values())
        ]
        limits = ", ".join(f"{k} {v}" for k, v in (lf.get("limits") or {}).items() if v)
        parts.append(
            f"length filter ({lf['strategy']}{'; limits ' + limits if limits else ''}): "
            + ("; ".join(touched) or "nothing dropped or truncated")
        )
    settings = split.get("settings") or {}
    fraction = settings.get("test_fraction")
    docs = data.get("documents") or {}
    sizes = ", ".join(
        f"{data['splits'].get(s, '?')} {s} examples"
        + (f" from {docs[s]} documents" if s in docs else "")
        for s in (data.get("splits") or {})
    )
    if files:
        rule = f"split: {split['rule']}"
    else:
        rule = (
            f"split {split['rule']}"
            + (f", {fraction:g} of the documents held out" if fraction is not None else "")
            + f", seed {split['seed']} ({split['seed_from']})"
        )
    tail = f"; {sizes}" if sizes else ""
    evaluated = f"Evaluation on the {data['evaluated_split']} split"
    if data.get("limit"):
        evaluated += f" (its first {data['limit']} examples only)"
    if data.get("test_set_sha256"):
        evaluated += f", test set sha256 {_short(data['test_set_sha256'])}"
    return "; ".join(parts) + f"; {rule}{tail}. {evaluated}."


def _models_sentence(models: Mapping[str, Any], training: Mapping[str, Any] | None) -> str:
    out = []
    for label, m in models.items():
        if m.get("kind") == "trained":
            base = _identity_text(m.get("base") or {})
            weights = ", ".join(
                f"{k} {_short(v)}" for k, v in (m.get("weights_sha256") or {}).items()
            )
            text = f"{label}: trained from {base}" + (
                f" (weights sha256 {weights})" if weights else ""
            )
            if training:
                text += f"; {_training_text(training)}"
            out.append(text)
        else:
            out.append(f"{label}: {_identity_text(m.get('identity') or {}) or m.get('what')}")
    return "Models: " + "; ".join(out) + "." if out else ""


def _identity_text(i: Mapping[str, Any]) -> str:
    kind = i.get("kind")
    if kind == "builtin":
        return f"{i.get('id')} (random weights from seed {i.get('seed')})"
    if kind == "hub":
        commit = i.get("commit")
        at = f", commit {_short(commit)}" if commit and commit != "unknown" else ""
        return f"{i.get('id')} (revision {i.get('revision')}{at})"
    if kind == "server":
        return f"{i.get('model')} served at {i.get('base_url')}"
    if kind in ("local", "run"):
        weights = ", ".join(f"{k} {_short(v)}" for k, v in (i.get("weights_sha256") or {}).items())
        return f"local weights ({weights or 'no weight files found'})"
    return ""


def _training_text(t: Mapping[str, Any]) -> str:
    given = t.get("hyperparameters") or {}
    keys = key_hyperparameters(t.get("method"))
    hp = ", ".join(f"{k} {given[k]}" for k in keys if given.get(k) is not None)
    lora = t.get("lora") or {}
    lora_text = (
        f"; LoRA r {lora.get('r')}, alpha {lora.get('lora_alpha')}, dropout {lora.get('lora_dropout')}"
        if lora
        else ""
    )
    quant = "; 4-bit quantized base" if (t.get("quantization") or {}).get("load_in_4bit") else ""
    rewards = t.get("rewards") or []
    reward_text = (
        "; rewards " + ", ".join(f"{r['name']} ×{r['weight']:g}" for r in rewards)
        if rewards
        else ""
    )
    return (
        f"{str(t.get('method')).upper()} with TRL's {t.get('trainer')} ({hp}){lora_text}{quant}"
        f"{reward_text}, seed {t.get('seed')}, on {t.get('device')} × {t.get('processes')}"
    )


def _prompt_sentence(f: Mapping[str, Any]) -> str:
    p = f["prompts"]
    templates = {label: m.get("chat_template") or {} for label, m in f["models"].items()}
    shown = "; ".join(
        f"{label} {t.get('name')} (sha256 {_short(t.get('sha256'))})"
        for label, t in templates.items()
        if t
    )
    return (
        f"Prompts (verbatim in the appendix): system template sha256 {_short(p['system_sha256'])}, "
        f"user template sha256 {_short(p['user_sha256'])}"
        + (f"; chat templates: {shown}" if shown else "")
        + "."
    )


def _decoding_sentence(d: Mapping[str, Any]) -> str:
    if not d:
        return ""
    how = (
        "greedy decoding"
        if not d.get("temperature")
        else f"sampling at temperature {d['temperature']}, top-p {d.get('top_p')}, seed {d.get('seed')}"
    )
    constraint = d.get("constraint") or {}
    if d.get("structured"):
        rules = "; ".join(f"{a}: {c}" for a, c in constraint.items())
        how += f", constrained to the task's answer grammar ({rules})"
    else:
        how += ", free text (no constrained decoding)"
    return (
        f"Decoding: {how}; at most {d.get('max_new_tokens')} new tokens, batch size "
        f"{d.get('batch_size')}, backend {d.get('backend')}."
    )


def _statistics_sentence(rep: Mapping[str, Any], kind: str) -> str:
    from llmscisci_cfg.eval import counts, stats

    boot = rep.get("bootstrap") or {}
    method = {"bca": "bias-corrected and accelerated (BCa)", "percentile": "percentile"}.get(
        boot.get("method"), boot.get("method")
    )
    tests = "McNemar's exact test on examples answered entirely right"
    if kind != "single":
        tests += " and a sign-flip permutation test over documents on the kind's loss"
    names = ", ".join(m.replace("_", " ") for m in counts.METRICS[kind])
    return (
        f"Metrics: {names}; {INVALID_SHORT[kind]}; averages run over the categories with "
        f"gold support in the evaluated set (scikit-learn's labels=, zero_division=0). Intervals: "
        f"{100 * boot.get('level', stats.LEVEL):.0f}% {method} bootstrap over "
        f"{boot.get('documents')} {boot.get('unit', 'document')}s ({boot.get('resamples')} "
        f"resamples, seed {boot.get('seed')}), the same resamples for every model; paired tests: "
        f"{tests}."
    )


def _short(value: Any, n: int = 12) -> str:
    text = str(value) if value else "unknown"
    return text[:n] if re.fullmatch(r"[0-9a-f]{16,}", text) else text


def appendix(meta: Any) -> list[str]:
    """The prompts verbatim: the templates, then each aspect's rendered messages."""
    found = getattr(meta, "methods", None)
    if not found:
        return []
    p = found["prompts"]
    lines = [
        "## Appendix: prompts",
        "",
        f"System prompt template (sha256 `{p['system_sha256']}`):",
        "",
        *_block(p["system_template"]),
        f"User prompt template (sha256 `{p['user_sha256']}`):",
        "",
        *_block(p["user_template"]),
    ]
    for aspect, messages in (p.get("rendered") or {}).items():
        if not messages:
            continue
        lines += [f"As rendered for {aspect} (the section text shown as `{TEXT_PLACEHOLDER}`):", ""]
        for m in messages:
            lines += [f"{m['role']}:", "", *_block(m["content"])]
    return lines


def _block(text: str) -> list[str]:
    fence = "````" if "```" in text else "```"
    return [f"{fence}text", text.rstrip(), fence, ""]
