"""The model card: ``final/README.md``, what the trained model is and how it was made.

Written from the manifest alone at the end of a run (it replaces TRL's draft, which names no
base model). YAML front matter for the model hub (``base_model`` when it is a hub or built-in
id, ``library_name``, ``tags``), then Markdown: the base model by hub id + revision or by its
weights' sha256 (a local path only as a note), method, recipe, data, task file, prompts and
chat template with their sha256, the preprocessing (drops, cleaning, length filter), split
sizes, training time, the tool's version and commit, library versions and the exact command.
`write_card` rewrites the whole card, so `eval` can call it again with an ``eval_summary`` to
append.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmscisci_cfg.runs.rundir import FINAL, write_atomic

CARD = "README.md"


def write_card(
    run_dir: str | Path, manifest: dict[str, Any], eval_summary: str | None = None
) -> Path:
    """Write ``run_dir/final/README.md`` from ``manifest`` (overwriting any) and return its path.

    ``eval_summary``: Markdown (e.g. `eval.report.summary_table` output) for an Evaluation section.
    """
    path = Path(run_dir) / FINAL / CARD
    write_atomic(path, card_text(Path(run_dir), manifest, eval_summary))
    return path


def card_text(run_dir: Path, manifest: dict[str, Any], eval_summary: str | None = None) -> str:
    """The card as text: front matter, then the sections (missing manifest keys are left out)."""
    method = str(_get(manifest, "compiled", "method") or "?")
    final = manifest.get("final") or {}
    hub_id, base, base_rows = base_model(manifest)
    adapter = final.get("kind") == "adapter"
    recipe = manifest.get("recipe") or {}
    name = _get(recipe, "resolved", "name") or run_dir.name
    front = {"library_name": "peft" if adapter else "transformers", "tags": ["llmscisci", method]}
    if hub_id:
        front = {"base_model": hub_id} | front
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {name}", ""]
    description = _get(recipe, "resolved", "description")
    if description:
        lines += [str(description), ""]
    what = f"a LoRA adapter over {base}" if adapter else "the full model"
    lines += [
        f"{method.upper()} fine-tune of {base} made with llmscisci (TRL); this folder holds "
        f"{what}, and the tokenizer with the chat template it was trained with.",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        *(
            f"| {key} | {_cell(value)} |"
            for key, value in base_rows + _training_rows(manifest, method)
        ),
        "",
        "## Reproduce",
        "",
        "```bash",
        str(manifest.get("command") or "?"),
        f"llmscisci reproduce {run_dir}   # re-runs the recipe and diffs metrics.jsonl",
        "```",
        "",
        "## Libraries",
        "",
        ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items() if v),
        "",
        "## Use",
        "",
        "```bash",
        f"llmscisci eval {run_dir} --reference   # this model vs the base on the held-out split",
        f"llmscisci export {run_dir}{' --merge' if adapter else ''}",
        "```",
    ]
    if eval_summary:
        lines += ["", "## Evaluation", "", eval_summary.rstrip()]
    return "\n".join(lines) + "\n"


def base_model(manifest: dict[str, Any]) -> tuple[str | None, str, list[tuple[str, str]]]:
    """The base model: its hub (or built-in) id for the front matter or None, its name for
    the text, and the table rows that identify it.

    A hub model is named with its revision; local weights by their sha256, with the folder
    (and the run that made them) as a note; a manifest from before ``parent_model`` falls
    back to ``final.base_model``.
    """
    parent = manifest.get("parent_model")
    if not isinstance(parent, dict):
        base = _get(manifest, "final", "base_model") or _get(
            manifest, "recipe", "resolved", "model", "name_or_path"
        )
        return (str(base) if base else None), f"`{base}`", [("base model", f"`{base}`")]
    kind = parent.get("kind")
    if kind in ("builtin", "hub"):
        name = _model_text(parent)
        return parent.get("id"), name, [("base model", name)]
    run = parent.get("run") if isinstance(parent.get("run"), dict) else None
    name = f"the final model of run `{run.get('dir')}`" if run else "a local model"
    rows = [("base model", name + " (identified by its weights' sha256 below)")]
    weights = parent.get("weights_sha256") or {}
    rows += [(f"base model `{file}` sha256", f"`{sha}`") for file, sha in weights.items()]
    if not weights:
        rows.append(("base model weights", "no weight files found"))
    if run:
        rows.append(("base model's recipe sha256", _code(run.get("recipe_sha256"))))
    root = parent.get("root") if isinstance(parent.get("root"), dict) else None
    if root:
        rows.append(("base model's chain starts at", _model_text(root)))
    rows.append(("base model folder", f"`{parent.get('path')}` (a local path: a note only)"))
    return (root or {}).get("id"), name, rows


def _model_text(model: dict[str, Any]) -> str:
    """``builtin:tiny`` (seed 3), or a hub id with the revision asked for and the commit."""
    if model.get("kind") == "builtin":
        return f"`{model.get('id')}` (seed {model.get('seed')})"
    commit = model.get("commit")
    at = f", commit `{commit}`" if commit and commit != "unknown" else ""
    return f"`{model.get('id')}` (revision `{model.get('revision')}`{at})"


def _training_rows(manifest: dict[str, Any], method: str) -> list[tuple[str, Any]]:
    recipe = manifest.get("recipe") or {}
    rows: list[tuple[str, Any]] = [("method", method.upper())]
    rows.append(("recipe", f"`{recipe.get('ref') or recipe.get('file')}`"))
    rows.append(("recipe sha256", _code(recipe.get("sha256"))))
    rows.append(("resolved recipe sha256", _code(recipe.get("resolved_sha256"))))
    if recipe.get("overrides"):
        rows.append(("overrides", " ".join(f"`--set {o}`" for o in recipe["overrides"])))
    for key, file in (manifest.get("data") or {}).items():
        label = {"source": "data", "labels": "labels"}.get(key, key)
        label = f"{key} split" if key in ("train", "validation", "test") else label
        if isinstance(file, dict):
            rows.append((label, f"`{file.get('path')}` ({file.get('file')})"))
            rows.append((f"{label} sha256", _code(file.get("sha256"))))
    rows += _prompt_rows(manifest)
    report = manifest.get("data_report") or {}
    if report.get("splits"):
        splits = ", ".join(f"{n} {split}" for split, n in report["splits"].items())
        dropped = sum((report.get("dropped") or {}).values())
        rows.append(("examples", f"{splits} ({dropped} dropped)"))
    rows += preprocessing_rows(report)
    rewards = manifest.get("rewards") or []
    if rewards:
        rows.append(("rewards", ", ".join(f"{r['label']} ×{r['weight']:g}" for r in rewards)))
    rows.append(("seed", manifest.get("seed")))
    processes = manifest.get("num_processes")
    rows.append(("device", f"{manifest.get('device')}, {processes} process(es)"))
    if manifest.get("train_seconds") is not None:
        rows.append(("train seconds", f"{manifest['train_seconds']:.1f}"))
    rows.append(("finished", manifest.get("end_time")))
    tool = manifest.get("tool")
    if isinstance(tool, dict):
        dirty = " (uncommitted changes)" if tool.get("dirty") else ""
        rows.append(("llmscisci", f"{tool.get('version')}, commit `{tool.get('commit')}`{dirty}"))
    git = manifest.get("git")
    if isinstance(git, dict) and git.get("sha"):
        rows.append(
            ("git", f"`{git.get('sha')}`" + (" (uncommitted changes)" if git.get("dirty") else ""))
        )
    return rows


def _prompt_rows(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    """The task file, the prompts as trained with (after task_overrides) and the chat template."""
    rows: list[tuple[str, Any]] = []
    task = manifest.get("task")
    if isinstance(task, dict):
        rows.append(("task", f"`{task.get('ref')}` ({task.get('file')})"))
        rows.append(("task sha256", _code(task.get("sha256"))))
        if task.get("overrides"):
            rows.append(("task overrides", ", ".join(task["overrides"])))
        rows.append(("system prompt sha256", _code(task.get("system_prompt_sha256"))))
        rows.append(("user prompt sha256", _code(task.get("user_prompt_sha256"))))
    template = manifest.get("template")
    if isinstance(template, dict) and template.get("sha256"):
        named = f" ({template['name']})" if template.get("name") else ""
        rows.append((f"chat template{named} sha256", _code(template["sha256"])))
    return rows


def preprocessing_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """What the data stage did, from the manifest's ``data_report``: examples dropped by
    reason, what ``data.clean`` changed per aspect, and what the length filter dropped or
    truncated per split and aspect.

    >>> preprocessing_rows({"dropped": {"empty_text": 2}, "length": {"strategy": "drop",
    ...     "splits": {"train": {"easy": {"total_too_long": 3}}}}})
    [('dropped', 'empty_text 2'), ('length filter (drop)', 'train easy: total_too_long 3')]
    """
    rows = []
    dropped = {k: n for k, n in (report.get("dropped") or {}).items() if n}
    if dropped:
        rows.append(("dropped", ", ".join(f"{k} {n}" for k, n in dropped.items())))
    for aspect, counts in (report.get("cleaning") or {}).items():
        changes = ", ".join(
            f"{k} {n}"
            for k, n in counts.items()
            if n and k not in ("sections", "changed") and not k.startswith("chars_")
        )
        text = f"{counts.get('changed', 0)} of {counts.get('sections', 0)} sections changed"
        rows.append((f"cleaning ({aspect})", text + (f" ({changes})" if changes else "")))
    length = report.get("length") or {}
    if length:
        found = [
            f"{split} {aspect}: " + ", ".join(f"{k} {n}" for k, n in counts.items())
            for split, aspects in (length.get("splits") or {}).items()
            for aspect, counts in aspects.items()
            if any(counts.values())
        ]
        rows.append((f"length filter ({length.get('strategy')})", "; ".join(found) or "none"))
    return rows


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _code(value: Any) -> str:
    return f"`{value}`" if value else "-"


def _cell(value: Any) -> str:
    """A Markdown table cell: no pipes or newlines from the value break the table."""
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
