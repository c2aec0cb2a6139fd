"""The model card: ``final/README.md``, what the trained model is and how it was made.

Written from the manifest alone at the end of a run (it replaces TRL's draft, which names no
base model). YAML front matter for the model hub (``base_model``, ``library_name``, ``tags``),
then Markdown: base model, method, recipe and data with their sha256, split sizes, training
time, library versions and the exact command. `write_card` rewrites the whole card, so `eval`
can call it again with an ``eval_summary`` to append.
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
    base = final.get("base_model") or _get(manifest, "recipe", "resolved", "model", "name_or_path")
    adapter = final.get("kind") == "adapter"
    recipe = manifest.get("recipe") or {}
    name = _get(recipe, "resolved", "name") or run_dir.name
    front = {
        "base_model": base,
        "library_name": "peft" if adapter else "transformers",
        "tags": ["llmscisci", method],
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {name}", ""]
    description = _get(recipe, "resolved", "description")
    if description:
        lines += [str(description), ""]
    what = f"a LoRA adapter over `{base}`" if adapter else "the full model"
    lines += [
        f"{method.upper()} fine-tune of `{base}` made with llmscisci (TRL); this folder holds "
        f"{what}, and the tokenizer with the chat template it was trained with.",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {_cell(value)} |" for key, value in _training_rows(manifest, base, method)),
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


def _training_rows(manifest: dict[str, Any], base: Any, method: str) -> list[tuple[str, Any]]:
    recipe = manifest.get("recipe") or {}
    rows: list[tuple[str, Any]] = [("base model", f"`{base}`"), ("method", method.upper())]
    rows.append(("recipe", f"`{recipe.get('ref') or recipe.get('file')}`"))
    rows.append(("recipe sha256", _code(recipe.get("sha256"))))
    rows.append(("resolved recipe sha256", _code(recipe.get("resolved_sha256"))))
    if recipe.get("overrides"):
        rows.append(("overrides", " ".join(f"`--set {o}`" for o in recipe["overrides"])))
    for key, label in (("source", "data"), ("traces", "traces")):
        file = (manifest.get("data") or {}).get(key)
        if file:
            rows.append((label, f"`{file.get('path')}` ({file.get('file')})"))
            rows.append((f"{label} sha256", _code(file.get("sha256"))))
    report = manifest.get("data_report") or {}
    if report.get("splits"):
        splits = ", ".join(f"{n} {split}" for split, n in report["splits"].items())
        dropped = sum((report.get("dropped") or {}).values())
        rows.append(("examples", f"{splits} ({dropped} dropped)"))
    rewards = manifest.get("rewards") or []
    if rewards:
        rows.append(("rewards", ", ".join(f"{r['label']} ×{r['weight']:g}" for r in rewards)))
    rows.append(("seed", manifest.get("seed")))
    processes = manifest.get("num_processes")
    rows.append(("device", f"{manifest.get('device')}, {processes} process(es)"))
    if manifest.get("train_seconds") is not None:
        rows.append(("train seconds", f"{manifest['train_seconds']:.1f}"))
    rows.append(("finished", manifest.get("end_time")))
    git = manifest.get("git")
    if git:
        rows.append(
            ("git", f"`{git.get('sha')}`" + (" (uncommitted changes)" if git.get("dirty") else ""))
        )
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
