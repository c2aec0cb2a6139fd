"""What ``llmscisci eval`` writes, and how its report is recomputed from ``predictions.jsonl``.

Files in the eval directory:

- ``predictions.jsonl``: one line per example and model (`Prediction`);
- ``meta.json``: what was evaluated (models, split, decoding) and the category names;
- ``report.json``: `metrics.report` of the predictions, ``{model: {"overall" | aspect: …}}``;
- ``report.md``: side-by-side tables, a few examples, the scoring rules;
- ``per_category_f1.png``: validity rates and per-category F1 of each model.

Every number in ``report.json`` follows from ``predictions.jsonl`` alone (the category names
come from ``meta.json``): `recompute` proves it.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.eval.metrics import INVALID_RULE, ZERO_DIVISION_RULE, Scored, report
from llmscisci_cfg.task.answer import format_valid

PREDICTIONS = "predictions.jsonl"
META = "meta.json"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOT = "per_category_f1.png"
SUMMARY_KEYS = ("format_valid_rate", "label_valid_rate", "hamming_loss", "micro_f1")
TABLE_KEYS = (
    "format_valid_rate",
    "label_valid_rate",
    "hamming_loss",
    "exact_match",
    "micro_f1",
    "macro_f1",
    "mean_reward",
)


@dataclass
class Prediction:
    """One line of ``predictions.jsonl``. ``reward`` is the weighted total of ``rewards``."""

    id: str
    aspect: str
    model: str
    gold: list[int] | None
    completion: str
    predicted: list[int] | None
    reward: float | None = None
    rewards: dict[str, float] = field(default_factory=dict)

    def scored(self) -> Scored:
        """The metrics' view; the format is judged again from the completion text."""
        valid = format_valid(self.completion)
        return Scored(
            self.aspect, self.gold, self.predicted, valid, self.reward, dict(self.rewards)
        )


@dataclass
class EvalMeta:
    """``meta.json``: the context of the numbers."""

    recipe: str
    run_dir: str | None
    split: str
    categories: dict[str, list[str]]
    models: dict[str, str]  # label -> what was loaded
    max_new_tokens: int
    batch_size: int
    limit: int | None
    device: str
    dtype: str
    reward_names: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    split_matches_training: bool | None = None  # None: no run to compare with


# ----------------------------------------------------------------------------- reading / writing


def write_predictions(path: Path, predictions: list[Prediction]) -> None:
    lines = (json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in predictions)
    path.write_text("".join(lines), encoding="utf-8")


def read_predictions(path: Path) -> list[Prediction]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Prediction(**json.loads(line)))
    return out


def build_report(predictions: list[Prediction], categories: dict[str, list[str]]) -> dict[str, Any]:
    """`metrics.report` over the predictions, models in first-seen order."""
    by_model: dict[str, list[Scored]] = {}
    for p in predictions:
        by_model.setdefault(p.model, []).append(p.scored())
    return report(by_model, categories)


def recompute(predictions_path: str | Path, categories: dict[str, list[str]] | None = None) -> dict:
    """The report dict, computed again from ``predictions.jsonl``.

    Category names come from ``categories`` or from the ``meta.json`` beside the file.
    """
    path = Path(predictions_path)
    if categories is None:
        categories = json.loads((path.parent / META).read_text(encoding="utf-8"))["categories"]
    return build_report(read_predictions(path), categories)


def files(out: Path) -> list[Path]:
    """The files `write_all` writes into ``out``."""
    return [out / name for name in (PREDICTIONS, META, REPORT_JSON, REPORT_MD, PLOT)]


def write_all(out: Path, predictions: list[Prediction], meta: EvalMeta) -> dict[str, Any]:
    """Write every eval file into ``out``; return the report dict."""
    out.mkdir(parents=True, exist_ok=True)
    rep = build_report(predictions, meta.categories)
    write_predictions(out / PREDICTIONS, predictions)
    (out / META).write_text(json.dumps(asdict(meta), indent=2) + "\n", encoding="utf-8")
    (out / REPORT_JSON).write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(markdown(rep, predictions, meta), encoding="utf-8")
    plot(rep, meta.categories, out / PLOT)
    return rep


# ----------------------------------------------------------------------------- text


def fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def summary_table(rep: dict[str, Any]) -> str:
    """The compact overall table printed at the end of ``llmscisci eval``."""
    width = max(len(m) for m in rep) + 2
    lines = [
        "model".ljust(width) + "".join(k.removesuffix("_rate").rjust(14) for k in SUMMARY_KEYS)
    ]
    for model, parts in rep.items():
        o = parts["overall"]
        lines.append(model.ljust(width) + "".join(fmt(o[k]).rjust(14) for k in SUMMARY_KEYS))
    return "\n".join(lines)


def _side_by_side(rep: dict[str, Any], part: str) -> list[str]:
    models = [m for m in rep if part in rep[m]]
    lines = ["| metric | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for key in ("n", *TABLE_KEYS):
        lines.append(f"| {key} | " + " | ".join(fmt(rep[m][part][key]) for m in models) + " |")
    names = dict.fromkeys(n for m in models for n in rep[m][part]["mean_rewards"])
    for name in names:
        cells = [fmt(rep[m][part]["mean_rewards"].get(name)) for m in models]
        lines.append(f"| mean reward {name} | " + " | ".join(cells) + " |")
    return lines


def _category_table(rep: dict[str, Any], aspect: str, names: list[str]) -> list[str]:
    models = [m for m in rep if aspect in rep[m] and rep[m][aspect]["per_category"]]
    if not models:
        return []
    head = "| # | category | support | " + " | ".join(f"F1 {m}" for m in models) + " |"
    lines = [head, "|---:|---|---:|" + "---:|" * len(models)]
    for i, name in enumerate(names, 1):
        cells = [fmt(rep[m][aspect]["per_category"][name]["f1"]) for m in models]
        support = rep[models[0]][aspect]["per_category"][name]["support"]
        lines.append(f"| {i} | {name} | {support} | " + " | ".join(cells) + " |")
    return lines


def _examples(predictions: list[Prediction], k: int = 3) -> list[str]:
    keys = list(dict.fromkeys((p.id, p.aspect) for p in predictions))[:k]
    lines = []
    for doc, aspect in keys:
        mine = [p for p in predictions if (p.id, p.aspect) == (doc, aspect)]
        lines += [f"### {doc} ({aspect})", "", f"gold: `{mine[0].gold}`", ""]
        for p in mine:
            text = p.completion if len(p.completion) <= 600 else p.completion[:600] + " …"
            lines += [f"**{p.model}**, predicted `{p.predicted}`:", "", "```text", text, "```", ""]
    return lines


def markdown(rep: dict[str, Any], predictions: list[Prediction], meta: EvalMeta) -> str:
    """``report.md``: tables for overall and each aspect, per-category F1, examples, rules."""
    lines = [f"# Evaluation of {meta.recipe} on the {meta.split} split", ""]
    lines += [f"- {label}: {what}" for label, what in meta.models.items()]
    lines += [
        f"- greedy decoding, at most {meta.max_new_tokens} new tokens, batch size "
        f"{meta.batch_size}, on {meta.device} ({meta.dtype})"
        + (f"; first {meta.limit} examples only" if meta.limit else ""),
        *(
            ["- **warning**: the rebuilt dataset differs from the one the run trained on"]
            if meta.split_matches_training is False
            else []
        ),
        f"- mean reward under: {', '.join(meta.reward_names) or 'no reward stack (the recipe has none)'}",
        "",
        "## Overall",
        "",
        *_side_by_side(rep, "overall"),
        "",
    ]
    for aspect, names in meta.categories.items():
        if any(aspect in parts for parts in rep.values()):
            lines += [f"## {aspect}", "", *_side_by_side(rep, aspect), ""]
            lines += [*_category_table(rep, aspect, names), ""]
    lines += ["## Scoring rules", "", INVALID_RULE, "", ZERO_DIVISION_RULE, ""]
    lines += ["## Examples", "", *_examples(predictions)]
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- plot


def plot(rep: dict[str, Any], categories: dict[str, list[str]], path: Path) -> Path:
    """Overall validity rates and F1, then per-category F1 of each aspect, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(rep)
    panels = [("overall", ["format_valid_rate", "label_valid_rate", "micro_f1", "macro_f1"])]
    panels += [(a, names) for a, names in categories.items() if any(a in rep[m] for m in models)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.8), dpi=100)
    axes = axes if len(panels) > 1 else [axes]
    height = 0.8 / len(models)
    for ax, (part, names) in zip(axes, panels, strict=True):
        for j, model in enumerate(models):
            values = [_bar_value(rep[model].get(part), part, name) for name in names]
            ys = [i + j * height for i in range(len(names))]
            bars = ax.barh(ys, values, height=height, label=model)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_yticks([i + height * (len(models) - 1) / 2 for i in range(len(names))])
        ax.set_yticklabels([textwrap.fill(n, 26) for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.12)
        ax.set_title(part if part == "overall" else f"{part}: F1 per category")
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _bar_value(part: dict[str, Any] | None, kind: str, name: str) -> float:
    if part is None:
        return 0.0
    value = part.get(name) if kind == "overall" else part["per_category"].get(name, {}).get("f1")
    return float(value) if value is not None else 0.0
