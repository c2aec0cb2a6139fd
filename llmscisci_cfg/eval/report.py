"""What ``llmscisci eval`` writes, and how its report is recomputed from ``predictions.jsonl``.

Files in the eval directory:

- ``predictions.jsonl``: one line per example and model (`Prediction`);
- ``meta.json``: what was evaluated (models, split, decoding) and the category names;
- ``report.json``: `metrics.report` of the predictions, ``{model: {"overall" | aspect: …}}``,
  each part with its bootstrap ``intervals``, then the top-level ``comparisons`` (policy
  against every other model), ``degenerate``, ``confusion``, ``frequencies`` and
  ``bootstrap`` (resamples, seed, unit; see `stats`) and ``test_set_sha256`` (which test
  set; equal values mean comparable reports, see `data.preprocess.held_out_sha256`);
- ``report.md``: tables with 95% intervals, paired comparisons, degenerate answers, category
  frequencies, a few examples, the scoring rules;
- ``per_category_f1.png``: validity rates and per-category F1 of each model.

Every number in ``report.json`` follows from ``predictions.jsonl`` alone (the category names
and the bootstrap's resamples and seed come from ``meta.json``): `recompute` proves it.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.eval import stats
from llmscisci_cfg.eval.metrics import (
    INVALID_RULE,
    ZERO_DIVISION_RULE,
    Scored,
    frequencies,
    report,
)
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
#: Top-level keys of report.json beside the models (and "gold", which names no model either).
TOP_LEVEL = (
    "comparisons",
    "degenerate",
    "confusion",
    "frequencies",
    "bootstrap",
    "test_set_sha256",
)
POLICY = "policy"
EXAMPLES = 3
EXCERPT_CHARS = 300
COMPLETION_CHARS = 600
BOOTSTRAP_RULE = (
    "Intervals are 95% percentile bootstrap intervals over documents: a resample draws "
    "documents with replacement and a drawn document brings all its examples (both aspects), "
    "for every model at once, so differences are paired; micro and macro F1 are recomputed "
    "from each resample's summed counts."
)
TESTS_RULE = (
    "Paired tests use the examples both models answered: McNemar's exact test on exact match "
    "(b = policy alone right, c = the other model alone right; two-sided binomial p-value) "
    "and a sign-flip permutation test over documents on Hamming loss."
)
DEGENERATE_RULE = (
    "Degenerate answers are shares of a model's valid answers: all zeros, all ones, or its "
    "most frequent answer in that aspect (constant; 1.0 means one answer for everything). "
    f"A policy is flagged when its all-zero or constant share exceeds another model's by more "
    f"than {stats.DEGENERATE_RISE:.2f}."
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
    prompt_excerpt: str | None = None  # the prompt's user text (see `excerpt`); not scored

    def scored(self) -> Scored:
        """The metrics' view; the format is judged again from the completion text."""
        valid = format_valid(self.completion)
        return Scored(
            self.aspect,
            self.gold,
            self.predicted,
            valid,
            self.reward,
            dict(self.rewards),
            doc=self.id,
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
    bootstrap_resamples: int = stats.RESAMPLES
    bootstrap_seed: int = 0
    generation: dict[str, dict[str, Any]] = field(default_factory=dict)  # engine stats per model
    test_set_sha256: str | None = None  # `data.preprocess.held_out_sha256` (test split only)
    label_constraints: dict[str, str] | None = None  # aspect -> the task's constraints, if any
    decoding: dict[str, Any] | None = None  # the resolved generation spec (`GenSpec.describe`)
    chat_templates: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> name, sha


def _decoding_line(meta: EvalMeta) -> str:
    """``greedy decoding constrained to the task's answer grammar`` (or sampled, or free)."""
    d = meta.decoding or {}
    how = (
        "greedy decoding"
        if not d.get("temperature")
        else (
            f"sampling at temperature {d['temperature']}, top-p {d.get('top_p')}, seed {d.get('seed')}"
        )
    )
    if d.get("structured"):
        return how + " constrained to the task's answer grammar"
    return how + (" (free text: structured output off)" if d else "")


# ----------------------------------------------------------------------------- reading / writing


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, cut at a word boundary to about ``limit`` characters.

    >>> excerpt("a  long   text here", 9)
    'a long …'
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[:limit].rsplit(" ", 1)[0] + " …"


def write_predictions(path: Path, predictions: list[Prediction]) -> None:
    """One JSON line per prediction; ``prompt_excerpt`` is left out when it is None."""
    rows = (asdict(p) for p in predictions)
    rows = ({k: v for k, v in r.items() if k != "prompt_excerpt" or v is not None} for r in rows)
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text("".join(lines), encoding="utf-8")


def read_predictions(path: Path) -> list[Prediction]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Prediction(**json.loads(line)))
    return out


def build_report(
    predictions: list[Prediction],
    categories: dict[str, list[str]],
    resamples: int = stats.RESAMPLES,
    seed: int = 0,
    test_set_sha256: str | None = None,
) -> dict[str, Any]:
    """`metrics.report` over the predictions (models in first-seen order), each part with its
    bootstrap ``intervals``, then the top-level keys of `TOP_LEVEL` (``test_set_sha256``
    names the test set the predictions were made on, for comparing reports)."""
    by_model: dict[str, list[Scored]] = {}
    for p in predictions:
        by_model.setdefault(p.model, []).append(p.scored())
    clash = sorted(set(by_model) & {*TOP_LEVEL, "gold"})
    if clash:
        raise ValueError(f"model labels {clash} are reserved report keys")
    rep = report(by_model, categories)
    for model, parts in stats.intervals(by_model, categories, rep, resamples, seed).items():
        for part, iv in parts.items():
            rep[model][part]["intervals"] = iv
    degenerate = _degenerate_shares(by_model, predictions)
    policy = POLICY if POLICY in by_model else next(iter(by_model))
    rep["comparisons"] = [
        {
            "policy": policy,
            "reference": other,
            **stats.compare(by_model[policy], by_model[other], categories, resamples, seed),
            "degenerate_flags": stats.degenerate_flags(degenerate[policy], degenerate[other]),
        }
        for other in by_model
        if other != policy
    ]
    rep["degenerate"] = degenerate
    rep["confusion"] = {
        m: {k: {c: s[c] for c in ("tp", "fp", "fn", "tn")} for k, s in per_category.items()}
        for m in by_model
        for per_category in [rep[m]["overall"]["per_category"]]
    }
    rep["frequencies"] = frequencies(by_model, categories)
    rep["bootstrap"] = {
        "resamples": resamples,
        "seed": seed,
        "unit": "document",
        "documents": len(stats.documents(r for rows in by_model.values() for r in rows)),
        "level": stats.LEVEL,
        "permutations": stats.PERMUTATIONS,
    }
    rep["test_set_sha256"] = test_set_sha256
    return rep


def _degenerate_shares(
    by_model: dict[str, list[Scored]], predictions: list[Prediction]
) -> dict[str, dict[str, Any]]:
    """`stats.degenerate` of gold (each labelled example once) and of each model's answers,
    with the model's number of empty completions."""
    gold = {}
    for rows in by_model.values():
        for r in rows:
            if r.gold is not None:
                gold.setdefault((r.doc, r.aspect), (r.aspect, r.gold))
    out = {"gold": stats.degenerate(gold.values())}
    for m, rows in by_model.items():
        out[m] = stats.degenerate((r.aspect, r.predicted) for r in rows)
        out[m]["empty_completions"] = sum(
            not p.completion.strip() for p in predictions if p.model == m
        )
    return out


def models(rep: dict[str, Any]) -> list[str]:
    """The model labels of a report, in order (the keys that are not `TOP_LEVEL`)."""
    return [k for k in rep if k not in TOP_LEVEL]


def recompute(predictions_path: str | Path, categories: dict[str, list[str]] | None = None) -> dict:
    """The report dict, computed again from ``predictions.jsonl``.

    Category names come from ``categories`` or from the ``meta.json`` beside the file; the
    bootstrap's resamples and seed, and the test-set sha256, from that ``meta.json``
    (defaults without one).
    """
    path = Path(predictions_path)
    meta_path = path.parent / META
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    if categories is None:
        categories = meta["categories"]
    return build_report(
        read_predictions(path),
        categories,
        resamples=meta.get("bootstrap_resamples", stats.RESAMPLES),
        seed=meta.get("bootstrap_seed", 0),
        test_set_sha256=meta.get("test_set_sha256"),
    )


def files(out: Path) -> list[Path]:
    """The files `write_all` writes into ``out``."""
    return [out / name for name in (PREDICTIONS, META, REPORT_JSON, REPORT_MD, PLOT)]


def write_all(out: Path, predictions: list[Prediction], meta: EvalMeta) -> dict[str, Any]:
    """Write every eval file into ``out``; return the report dict."""
    out.mkdir(parents=True, exist_ok=True)
    rep = build_report(
        predictions,
        meta.categories,
        meta.bootstrap_resamples,
        meta.bootstrap_seed,
        meta.test_set_sha256,
    )
    write_predictions(out / PREDICTIONS, predictions)
    (out / META).write_text(json.dumps(asdict(meta), indent=2) + "\n", encoding="utf-8")
    (out / REPORT_JSON).write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(markdown(rep, predictions, meta), encoding="utf-8")
    plot(rep, meta.categories, out / PLOT)
    return rep


# ----------------------------------------------------------------------------- text


def fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _ci(iv: list[float] | None, sign: str = "") -> str:
    return "–" if iv is None else f"[{iv[0]:{sign}.3f}, {iv[1]:{sign}.3f}]"


def summary_table(rep: dict[str, Any]) -> str:
    """The compact overall table printed at the end of ``llmscisci eval``."""
    names = models(rep)
    width = max(len(m) for m in names) + 2
    lines = [
        "model".ljust(width) + "".join(k.removesuffix("_rate").rjust(14) for k in SUMMARY_KEYS)
    ]
    for model in names:
        o = rep[model]["overall"]
        lines.append(model.ljust(width) + "".join(fmt(o[k]).rjust(14) for k in SUMMARY_KEYS))
    return "\n".join(lines)


def _side_by_side(rep: dict[str, Any], part: str) -> list[str]:
    """Point estimates per model, then their 95% intervals."""
    ms = [m for m in models(rep) if part in rep[m]]
    head = "| metric | " + " | ".join([*ms, *(f"95% CI {m}" for m in ms)]) + " |"
    lines = [head, "|---|" + "---:|" * len(ms) + "---|" * len(ms)]
    for key in ("n", *TABLE_KEYS):
        points = [fmt(rep[m][part][key]) for m in ms]
        cis = [_ci(rep[m][part]["intervals"][key]) if key != "n" else "" for m in ms]
        lines.append(f"| {key} | " + " | ".join([*points, *cis]) + " |")
    names = dict.fromkeys(n for m in ms for n in rep[m][part]["mean_rewards"])
    for name in names:
        cells = [fmt(rep[m][part]["mean_rewards"].get(name)) for m in ms]
        lines.append(f"| mean reward {name} | " + " | ".join([*cells, *[""] * len(ms)]) + " |")
    return lines


def _category_table(rep: dict[str, Any], aspect: str, names: list[str]) -> list[str]:
    ms = [m for m in models(rep) if aspect in rep[m] and rep[m][aspect]["per_category"]]
    if not ms:
        return []
    head = "| # | category | support | " + " | ".join(f"F1 {m}" for m in ms) + " |"
    lines = [head, "|---:|---|---:|" + "---:|" * len(ms)]
    for i, name in enumerate(names, 1):
        cells = [fmt(rep[m][aspect]["per_category"][name]["f1"]) for m in ms]
        support = rep[ms[0]][aspect]["per_category"][name]["support"]
        lines.append(f"| {i} | {name} | {support} | " + " | ".join(cells) + " |")
    return lines


def _comparisons(rep: dict[str, Any]) -> list[str]:
    """Differences with intervals, one column pair per reference, then the paired tests."""
    comps = rep["comparisons"]
    if not comps:
        return []
    head = " | ".join(f"{c['policy']} − {c['reference']} | 95% CI" for c in comps)
    lines = [
        "## Paired comparisons",
        "",
        f"| metric | {head} |",
        "|---|" + "---:|---|" * len(comps),
    ]
    for key in TABLE_KEYS:
        cells = []
        for c in comps:
            d = c["metric"][key]
            cells += ["–" if d["difference"] is None else f"{d['difference']:+.3f}"]
            cells += [_ci(d["interval"], "+")]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("")
    for c in comps:
        mc, perm = c["mcnemar_exact_match"], c["permutation_hamming"]
        how = "every sign vector" if perm["exact"] else f"{perm['permutations']} random sign flips"
        lines.append(
            f"- {c['policy']} vs {c['reference']}, {c['examples']} examples from "
            f"{c['documents']} documents: exact match, McNemar exact test: {c['policy']} alone "
            f"right {mc['b']}, {c['reference']} alone right {mc['c']}, p = {mc['p_value']:.3g}; "
            f"Hamming loss, permutation test ({how}): p = {perm['p_value']:.3g}"
        )
    return [*lines, ""]


def _degenerate(rep: dict[str, Any]) -> list[str]:
    lines = [
        "## Degenerate answers",
        "",
        "| answers of | valid answers | empty completions | all-zero | all-one | constant |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for who, d in rep["degenerate"].items():
        empty = d.get("empty_completions", "")
        cells = [str(d["answers"]), str(empty), *(fmt(d[k]) for k in ("all_zero", "all_one"))]
        lines.append(f"| {who} | " + " | ".join([*cells, fmt(d["constant"])]) + " |")
    lines.append("")
    flagged = False
    for c in rep["comparisons"]:
        for k in c["degenerate_flags"]:
            flagged = True
            mine, theirs = (rep["degenerate"][c[x]][k] for x in ("policy", "reference"))
            lines.append(
                f"**flag**: {c['policy']}'s share of {k.replace('_', '-')} answers rises from "
                f"{theirs:.3f} ({c['reference']}) to {mine:.3f}."
            )
    if rep["comparisons"] and not flagged:
        lines.append(
            f"No rise above {stats.DEGENERATE_RISE:.2f} in all-zero or constant answers "
            "against any other model."
        )
    return [*lines, ""]


def _frequencies(rep: dict[str, Any]) -> list[str]:
    freq = rep["frequencies"]
    who = list(freq)
    lines = [
        "## Category frequencies",
        "",
        "Examples whose gold label, or whose valid answer, has the category.",
        "",
        "| category | " + " | ".join(who) + " |",
        "|---|" + "---:|" * len(who),
    ]
    for key in freq["gold"]:
        lines.append(f"| {key} | " + " | ".join(str(freq[w][key]) for w in who) + " |")
    return [*lines, ""]


def _clip(text: str, limit: int = COMPLETION_CHARS) -> str:
    """A completion for a code block: blank-line runs squeezed, cut at ``limit`` characters."""
    text = re.sub(r"\n[ \t]*(?:\n[ \t]*)+\n", "\n\n", text.strip())
    return text if len(text) <= limit else text[:limit] + " …"


def _examples(predictions: list[Prediction], k: int = EXAMPLES) -> list[str]:
    """``k`` examples, those every model answered first: input excerpt, gold, each answer."""
    empty: dict[tuple[str, str], int] = {}
    for p in predictions:  # examples with fewer empty completions first, else in order
        empty[(p.id, p.aspect)] = empty.get((p.id, p.aspect), 0) + (not p.completion.strip())
    keys = sorted(empty, key=empty.get)[:k]
    lines = []
    for doc, aspect in keys:
        mine = [p for p in predictions if (p.id, p.aspect) == (doc, aspect)]
        prompt = next((p.prompt_excerpt for p in mine if p.prompt_excerpt), None)
        lines += [f"### {doc} ({aspect})", ""]
        lines += [f"> {excerpt(prompt)}", ""] if prompt else []
        lines += [f"gold: `{mine[0].gold}`", ""]
        for p in mine:
            head = f"**{p.model}**, predicted `{p.predicted}`, reward {fmt(p.reward)}"
            if not p.completion.strip():
                lines += [f"{head}: empty completion", ""]
                continue
            text = _clip(p.completion)
            fence = "````" if "```" in text else "```"
            lines += [f"{head}:", "", f"{fence}text", text, fence, ""]
    return lines


def markdown(rep: dict[str, Any], predictions: list[Prediction], meta: EvalMeta) -> str:
    """``report.md``: tables with intervals for overall and each aspect, per-category F1, paired
    comparisons, degenerate answers, category frequencies, the rules, a few examples."""
    boot = rep["bootstrap"]
    empties = [
        f"{d['empty_completions']} of {rep[m]['overall']['n']} {m}"
        for m, d in rep["degenerate"].items()
        if m != "gold"
    ]
    lines = [f"# Evaluation of {meta.recipe} on the {meta.split} split", ""]
    lines += [f"- {label}: {what}" for label, what in meta.models.items()]
    lines += [
        f"- {_decoding_line(meta)}, at most {meta.max_new_tokens} new tokens, batch size "
        f"{meta.batch_size}, on {meta.device} ({meta.dtype})"
        + (f"; first {meta.limit} examples only" if meta.limit else ""),
        *[
            f"- chat template of {label}: {t['name']} (sha256 `{t['sha256']}`)"
            for label, t in meta.chat_templates.items()
        ],
        *(
            ["- **warning**: the rebuilt dataset differs from the one the run trained on"]
            if meta.split_matches_training is False
            else []
        ),
        f"- mean reward under: {', '.join(meta.reward_names) or 'no reward stack (the recipe has none)'}",
        *(
            [
                "- label constraints of the task (a label that breaks them is invalid): "
                + "; ".join(f"{a}: {rule}" for a, rule in meta.label_constraints.items())
            ]
            if meta.label_constraints
            else []
        ),
        *(
            [
                f"- test set sha256: `{meta.test_set_sha256}` (same value, same documents, gold "
                "labels and section texts)"
            ]
            if meta.test_set_sha256
            else []
        ),
        f"- 95% intervals: bootstrap over {boot['documents']} documents ({boot['resamples']} "
        f"resamples, seed {boot['seed']}); both aspects of a document move together",
        f"- empty completions: {', '.join(empties)}",
        "",
        "## Overall",
        "",
        *_side_by_side(rep, "overall"),
        "",
    ]
    for aspect, names in meta.categories.items():
        if any(aspect in rep[m] for m in models(rep)):
            lines += [f"## {aspect}", "", *_side_by_side(rep, aspect), ""]
            lines += [*_category_table(rep, aspect, names), ""]
    lines += [*_comparisons(rep), *_degenerate(rep), *_frequencies(rep)]
    rules = (INVALID_RULE, ZERO_DIVISION_RULE, BOOTSTRAP_RULE, TESTS_RULE, DEGENERATE_RULE)
    lines += ["## Scoring rules", ""] + [x for rule in rules for x in (rule, "")]
    lines += ["## Examples", "", *_examples(predictions)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


# ----------------------------------------------------------------------------- plot


def plot(rep: dict[str, Any], categories: dict[str, list[str]], path: Path) -> Path:
    """Overall validity rates and F1, then per-category F1 of each aspect, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = models(rep)
    panels = [("overall", ["format_valid_rate", "label_valid_rate", "micro_f1", "macro_f1"])]
    panels += [(a, names) for a, names in categories.items() if any(a in rep[m] for m in labels)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.8), dpi=100)
    axes = axes if len(panels) > 1 else [axes]
    height = 0.8 / len(labels)
    for ax, (part, names) in zip(axes, panels, strict=True):
        for j, model in enumerate(labels):
            values = [_bar_value(rep[model].get(part), part, name) for name in names]
            ys = [i + j * height for i in range(len(names))]
            bars = ax.barh(ys, values, height=height, label=model)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_yticks([i + height * (len(labels) - 1) / 2 for i in range(len(names))])
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
