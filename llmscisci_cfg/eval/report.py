"""What ``llmscisci eval`` writes, and how its report is recomputed from ``predictions.jsonl``.

Files in the eval directory:

- ``predictions.jsonl``: one line per example and model (`Prediction`); ``gold`` and
  ``predicted`` are values of the aspect's answer kind (single: the category's index; multi: a
  one-hot list; dimensions: one level per dimension, 0 = not present);
- ``meta.json``: what was evaluated (models, split, decoding), the categories and answer kinds;
- ``report.json``: per model and part (``overall``, each aspect) the kind's metrics
  (`metrics`) with their bootstrap ``intervals`` and ``per_class_intervals``; then the
  top-level keys of `TOP_LEVEL`: ``kind`` and ``kinds`` (the answer kinds), ``comparisons``
  (policy against every other model), ``degenerate``, ``frequencies``, ``bootstrap``
  (resamples, seed, unit, method; see `stats`), ``test_set_sha256`` (which test set; equal
  values mean comparable reports, see `data.preprocess.held_out_sha256`), ``warnings``
  (where the data cannot support a claim, `adequacy`) and ``methods`` (the facts of the
  methods paragraph, `methods`);
- ``report.md``: a methods paragraph, warnings, tables with 95% intervals, per-category
  scores and confusion tables, paired comparisons, degenerate answers, category frequencies,
  the scoring rules, a few examples, the prompts verbatim;
- ``per_category_f1.png``: the headline metrics and per-category F1 of each model, with
  their 95% intervals as error bars.

Every number in ``report.json`` follows from ``predictions.jsonl`` alone (the kinds and the
bootstrap's resamples and seed come from ``meta.json``): `recompute` proves it.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.eval import adequacy, stats
from llmscisci_cfg.eval import methods as eval_methods
from llmscisci_cfg.eval.metrics import (
    OVERALL,
    Scored,
    frequencies,
    kind_name,
    parts,
    report,
    rules,
)
from llmscisci_cfg.task.answer import format_valid
from llmscisci_cfg.task.kinds import LabelKind, MultiLabel, from_wire, wire

PREDICTIONS = "predictions.jsonl"
META = "meta.json"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOT = "per_category_f1.png"
#: Top-level keys of report.json beside the models (and "gold", which names no model either).
TOP_LEVEL = (
    "kind",
    "kinds",
    "comparisons",
    "degenerate",
    "frequencies",
    "bootstrap",
    "test_set_sha256",
    "warnings",
    "methods",
)
#: The metrics the console summary, the model card and the plot show first, by kind.
KEY_METRICS = {
    "single": ("accuracy", "macro_f1", "micro_f1"),
    "multi": ("micro_f1", "macro_f1", "hamming_loss"),
    "dimensions": ("intensity_accuracy", "dimension_accuracy", "macro_f1"),
}
POLICY = "policy"
EXAMPLES = 3
EXCERPT_CHARS = 300
COMPLETION_CHARS = 600
DEGENERATE_RULE = (
    "Degenerate answers are shares of a model's valid answers: its most frequent answer in "
    "that aspect (constant; 1.0 means one answer for everything) and, for sets of categories, "
    "answers naming none (all-zero) or every one (all-one). A policy is flagged when its "
    f"all-zero or constant share exceeds another model's by more than {stats.DEGENERATE_RISE:.2f}."
)


@dataclass
class Prediction:
    """One line of ``predictions.jsonl``. ``reward`` is the weighted total of ``rewards``;
    ``gold`` / ``predicted`` are answer-kind values (lists, never tuples: JSON's shapes)."""

    id: str
    aspect: str
    model: str
    gold: Any
    completion: str
    predicted: Any
    reward: float | None = None
    rewards: dict[str, float] = field(default_factory=dict)
    prompt_excerpt: str | None = None  # the prompt's user text (see `excerpt`); not scored

    def scored(self) -> Scored:
        """The metrics' view; the format is judged again from the completion text."""
        valid = format_valid(self.completion)
        return Scored(
            self.aspect, self.gold, self.predicted, valid, self.reward, dict(self.rewards),
            doc=self.id,
        )  # fmt: skip


def json_value(value: Any) -> Any:
    """A kind value as ``predictions.jsonl`` holds it (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


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
    kinds: dict[str, dict[str, Any]] | None = None  # aspect -> `task.kinds.wire` of its kind
    interval_method: str = stats.DEFAULT_METHOD
    methods: dict[str, Any] | None = None  # `eval.methods.facts` (None: not recorded)

    def label_kinds(self) -> dict[str, LabelKind]:
        """Each aspect's answer kind (an older meta.json without kinds: multi-label)."""
        if self.kinds:
            return {a: from_wire(w) for a, w in self.kinds.items()}
        return {a: MultiLabel(tuple(c)) for a, c in self.categories.items()}


def kinds_meta(kinds: Mapping[str, LabelKind]) -> dict[str, dict[str, Any]]:
    """The ``kinds`` field of `EvalMeta`."""
    return {a: wire(k) for a, k in kinds.items()}


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
    kinds: Mapping[str, LabelKind],
    resamples: int = stats.RESAMPLES,
    seed: int = 0,
    test_set_sha256: str | None = None,
    method: str = stats.DEFAULT_METHOD,
    methods: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics of each model (in first-seen order) with intervals, then `TOP_LEVEL`."""
    by_model: dict[str, list[Scored]] = {}
    for p in predictions:
        by_model.setdefault(p.model, []).append(p.scored())
    clash = sorted(set(by_model) & {*TOP_LEVEL, "gold"})
    if clash:
        raise ValueError(f"model labels {clash} are reserved report keys")
    kind = kind_name(kinds)
    rep: dict[str, Any] = report(by_model, kinds)
    index = stats.units(r.doc for rows in by_model.values() for r in rows)
    found = {model: parts(rows, kinds) for model, rows in by_model.items()}
    for model, ivs in stats.model_intervals(found, index, resamples, seed, method).items():
        for part, values in ivs.items():
            rep[model][part] |= values
    degenerate = _degenerate_shares(by_model, predictions, kind)
    policy = POLICY if POLICY in by_model else next(iter(by_model))

    def pooled(rows: list[Scored]):
        return parts(rows, kinds)[OVERALL]

    rep["kind"] = kind
    rep["kinds"] = kinds_meta(kinds)
    rep["comparisons"] = [
        {
            "policy": policy,
            "reference": other,
            **stats.compare(
                by_model[policy], by_model[other], pooled, resamples, seed, method=method
            ),
            "degenerate_flags": stats.degenerate_flags(degenerate[policy], degenerate[other]),
        }
        for other in by_model
        if other != policy
    ]
    rep["degenerate"] = degenerate
    rep["frequencies"] = frequencies(by_model, kinds)
    rep["bootstrap"] = {
        "resamples": resamples,
        "seed": seed,
        "unit": "document",
        "documents": len(index),
        "level": stats.LEVEL,
        "method": method,
        "permutations": stats.PERMUTATIONS,
    }
    rep["test_set_sha256"] = test_set_sha256
    rep["warnings"] = adequacy.warnings(rep, models(rep), unit="documents")
    rep["methods"] = methods
    return rep


def _degenerate_shares(
    by_model: dict[str, list[Scored]], predictions: list[Prediction], kind: str
) -> dict[str, dict[str, Any]]:
    """`stats.degenerate` of gold (each labelled example once) and of each model's answers,
    with the model's number of empty completions."""
    gold = {}
    for rows in by_model.values():
        for r in rows:
            if r.gold is not None:
                gold.setdefault((r.doc, r.aspect), (r.aspect, r.gold))
    out = {"gold": stats.degenerate(gold.values(), kind)}
    for m, rows in by_model.items():
        out[m] = stats.degenerate(((r.aspect, r.predicted) for r in rows), kind)
        out[m]["empty_completions"] = sum(
            not p.completion.strip() for p in predictions if p.model == m
        )
    return out


def models(rep: dict[str, Any]) -> list[str]:
    """The model labels of a report, in order (the keys that are not `TOP_LEVEL`)."""
    return [k for k in rep if k not in TOP_LEVEL]


def read_meta(path: Path) -> EvalMeta | None:
    """``meta.json`` as an `EvalMeta` (None when absent)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    known = EvalMeta.__dataclass_fields__
    return EvalMeta(**{k: v for k, v in data.items() if k in known})


def recompute(
    predictions_path: str | Path, kinds: Mapping[str, LabelKind] | None = None
) -> dict[str, Any]:
    """The report dict, computed again from ``predictions.jsonl``.

    The answer kinds come from ``kinds`` or from the ``meta.json`` beside the file; the
    bootstrap's resamples, seed and method, the test-set sha256 and the methods facts from
    that ``meta.json`` (defaults without one)."""
    path = Path(predictions_path)
    meta = read_meta(path.parent / META)
    if kinds is None:
        if meta is None:
            raise ValueError(f"{path.parent / META} is missing: pass the answer kinds")
        kinds = meta.label_kinds()
    return build_report(
        read_predictions(path),
        kinds,
        resamples=meta.bootstrap_resamples if meta else stats.RESAMPLES,
        seed=meta.bootstrap_seed if meta else 0,
        test_set_sha256=meta.test_set_sha256 if meta else None,
        method=meta.interval_method if meta else stats.DEFAULT_METHOD,
        methods=meta.methods if meta else None,
    )


def files(out: Path) -> list[Path]:
    """The files `write_all` writes into ``out``."""
    return [out / name for name in (PREDICTIONS, META, REPORT_JSON, REPORT_MD, PLOT)]


def write_all(out: Path, predictions: list[Prediction], meta: EvalMeta) -> dict[str, Any]:
    """Write every eval file into ``out``; return the report dict."""
    out.mkdir(parents=True, exist_ok=True)
    kinds = meta.label_kinds()
    rep = build_report(
        predictions,
        kinds,
        meta.bootstrap_resamples,
        meta.bootstrap_seed,
        meta.test_set_sha256,
        meta.interval_method,
        meta.methods,
    )
    write_predictions(out / PREDICTIONS, predictions)
    (out / META).write_text(json.dumps(asdict(meta), indent=2) + "\n", encoding="utf-8")
    (out / REPORT_JSON).write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(markdown(rep, predictions, meta), encoding="utf-8")
    plot(rep, kinds, out / PLOT)
    return rep


# ----------------------------------------------------------------------------- text


def fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _ci(iv: list[float] | None, sign: str = "") -> str:
    return "–" if iv is None else f"[{iv[0]:{sign}.3f}, {iv[1]:{sign}.3f}]"


def with_ci(part: dict[str, Any], key: str) -> str:
    """``0.750 [0.700, 0.800]``: a point estimate and its interval."""
    iv = part.get("intervals", {}).get(key)
    return fmt(part.get(key)) + ("" if iv is None else f" {_ci(iv)}")


def summary_table(rep: dict[str, Any]) -> str:
    """The compact overall table printed at the end of ``llmscisci eval`` (and put in the
    model card): validity rates, then the kind's key metrics with 95% intervals."""
    names = models(rep)
    keys = KEY_METRICS[rep["kind"]]
    width = max(len(m) for m in names) + 2
    cells = {
        m: [
            str(rep[m][OVERALL]["n"]),
            fmt(rep[m][OVERALL]["format_valid_rate"]),
            fmt(rep[m][OVERALL]["label_valid_rate"]),
            *(with_ci(rep[m][OVERALL], k) for k in keys),
        ]
        for m in names
    }
    heads = ["n", "format_valid", "label_valid", *keys]
    widths = [max(len(h), *(len(c[i]) for c in cells.values())) + 2 for i, h in enumerate(heads)]
    lines = ["model".ljust(width) + "".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))]
    for m in names:
        lines.append(
            m.ljust(width) + "".join(c.rjust(w) for c, w in zip(cells[m], widths, strict=True))
        )
    return "\n".join(lines)


def _side_by_side(rep: dict[str, Any], part: str) -> list[str]:
    """Point estimates per model, then their 95% intervals."""
    ms = [m for m in models(rep) if part in rep[m]]
    head = "| metric | " + " | ".join([*ms, *(f"95% CI {m}" for m in ms)]) + " |"
    lines = [head, "|---|" + "---:|" * len(ms) + "---|" * len(ms)]
    for key in ("n", "n_labelled", "invalid"):
        points = [fmt(rep[m][part][key]) for m in ms]
        lines.append(f"| {key} | " + " | ".join([*points, *[""] * len(ms)]) + " |")
    for key in stats.headline(rep["kind"]):
        points = [fmt(rep[m][part][key]) for m in ms]
        cis = [_ci(rep[m][part]["intervals"][key]) for m in ms]
        lines.append(f"| {key} | " + " | ".join([*points, *cis]) + " |")
    names = dict.fromkeys(n for m in ms for n in rep[m][part]["mean_rewards"])
    for name in names:
        cells = [fmt(rep[m][part]["mean_rewards"].get(name)) for m in ms]
        lines.append(f"| mean reward {name} | " + " | ".join([*cells, *[""] * len(ms)]) + " |")
    return lines


def _class_table(rep: dict[str, Any], part: str) -> list[str]:
    """Per category: support, then each model's precision, recall and F1 (F1 with its
    interval)."""
    ms = [m for m in models(rep) if part in rep[m] and rep[m][part]["per_class"]]
    if not ms:
        return []
    heads = [f"{h} {m}" for m in ms for h in ("P", "R", "F1")] + [f"F1 95% CI {m}" for m in ms]
    lines = [
        "| # | category | support | " + " | ".join(heads) + " |",
        "|---:|---|---:|" + "---:|" * (3 * len(ms)) + "---|" * len(ms),
    ]
    first = rep[ms[0]][part]["per_class"]
    for i, name in enumerate(first, 1):
        cells = [
            fmt(rep[m][part]["per_class"][name][k])
            for m in ms
            for k in ("precision", "recall", "f1")
        ]
        cis = [_ci(rep[m][part]["per_class_intervals"][name]["f1"]) for m in ms]
        lines.append(
            f"| {i} | {name} | {first[name]['support']} | " + " | ".join([*cells, *cis]) + " |"
        )
    return lines


def _confusion(rep: dict[str, Any], part: str) -> list[str]:
    """Each model's confusion table of one aspect."""
    lines = []
    for m in models(rep):
        conf = rep[m].get(part, {}).get("confusion")
        if not conf:
            continue
        lines += [f"Confusion of {m} ({part}):", ""]
        if "matrix" in conf:
            lines += [
                "| gold \\ answer | " + " | ".join(conf["columns"]) + " |",
                "|---|" + "---:|" * len(conf["columns"]),
                *(
                    f"| {row} | " + " | ".join(str(v) for v in values) + " |"
                    for row, values in zip(conf["rows"], conf["matrix"], strict=True)
                ),
            ]
        else:
            lines += ["| category | tp | fp | fn | tn |", "|---|---:|---:|---:|---:|"]
            lines += [
                f"| {c} | {v['tp']} | {v['fp']} | {v['fn']} | {v['tn']} |" for c, v in conf.items()
            ]
        lines.append("")
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
    for key in stats.headline(rep["kind"]):
        cells = []
        for c in comps:
            d = c["metric"][key]
            cells += ["–" if d["difference"] is None else f"{d['difference']:+.3f}"]
            cells += [_ci(d["interval"], "+")]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("")
    right = "right" if rep["kind"] == "single" else "entirely right"
    for c in comps:
        mc, perm = c["mcnemar"], c["permutation"]
        text = (
            f"- {c['policy']} vs {c['reference']}, {c['examples']} examples from "
            f"{c['documents']} documents: McNemar's exact test on examples {right}: "
            f"{c['policy']} alone right {mc['b']}, {c['reference']} alone right {mc['c']}, "
            f"p = {mc['p_value']:.3g}"
        )
        if perm is not None:
            how = (
                "every sign vector"
                if perm["exact"]
                else f"{perm['permutations']} random sign flips"
            )
            text += f"; {perm['loss'].replace('_', ' ')}, permutation test ({how}): p = {perm['p_value']:.3g}"
        lines.append(text)
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
    what = "is present in" if rep["kind"] == "dimensions" else "names"
    lines = [
        "## Category frequencies",
        "",
        f"Examples whose gold label, or whose valid answer, {what} the category.",
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


def _public(kinds: Mapping[str, LabelKind], aspect: str, value: Any) -> str:
    """A value as a prediction table shows it (a name, a one-hot list, a dict)."""
    kind = kinds.get(aspect)
    if value is None or kind is None:
        return str(value)
    try:
        shown = kind.public(
            tuple(value) if isinstance(value, list) and kind.kind == "dimensions" else value
        )
    except (IndexError, TypeError):
        return str(value)
    return json.dumps(shown, ensure_ascii=False) if isinstance(shown, (dict, list)) else shown


def _examples(
    predictions: list[Prediction], kinds: Mapping[str, LabelKind], k: int = EXAMPLES
) -> list[str]:
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
        lines += [f"gold: `{_public(kinds, aspect, mine[0].gold)}`", ""]
        for p in mine:
            shown = "invalid" if p.predicted is None else f"`{_public(kinds, aspect, p.predicted)}`"
            head = f"**{p.model}**, predicted {shown}, reward {fmt(p.reward)}"
            if not p.completion.strip():
                lines += [f"{head}: empty completion", ""]
                continue
            text = _clip(p.completion)
            fence = "````" if "```" in text else "```"
            lines += [f"{head}:", "", f"{fence}text", text, fence, ""]
    return lines


def _context(rep: dict[str, Any], meta: EvalMeta) -> list[str]:
    """The bullet list under the title: models, decoding, templates, test set, intervals."""
    boot = rep["bootstrap"]
    empties = [
        f"{d['empty_completions']} of {rep[m][OVERALL]['n']} {m}"
        for m, d in rep["degenerate"].items()
        if m != "gold"
    ]
    lines = [f"- {label}: {what}" for label, what in meta.models.items()]
    lines += [
        f"- {_decoding_line(meta)}, at most {meta.max_new_tokens} new tokens, batch size "
        f"{meta.batch_size}, on {meta.device} ({meta.dtype})"
        + (f"; first {meta.limit} examples only" if meta.limit else ""),
        *[
            f"- chat template of {label}: {t['name']} (sha256 `{t['sha256']}`)"
            for label, t in meta.chat_templates.items()
        ],
    ]
    if meta.split_matches_training is False:
        lines.append("- **warning**: the rebuilt dataset differs from the one the run trained on")
    lines.append(
        f"- mean reward under: {', '.join(meta.reward_names) or 'no reward stack (the recipe has none)'}"
    )
    if meta.label_constraints:
        lines.append(
            "- label constraints of the task (a label that breaks them is invalid): "
            + "; ".join(f"{a}: {rule}" for a, rule in meta.label_constraints.items())
        )
    if meta.test_set_sha256:
        lines.append(
            f"- test set sha256: `{meta.test_set_sha256}` (same value, same documents, gold "
            "labels and section texts)"
        )
    lines += [
        f"- 95% intervals: {stats_method_text(boot['method'])} over {boot['documents']} documents "
        f"({boot['resamples']} resamples, seed {boot['seed']}); the aspects of a document move "
        "together",
        f"- empty completions: {', '.join(empties)}",
    ]
    return lines


def stats_method_text(method: str) -> str:
    return {"bca": "BCa bootstrap", "percentile": "percentile bootstrap"}.get(method, method)


def markdown(rep: dict[str, Any], predictions: list[Prediction], meta: EvalMeta) -> str:
    """``report.md``: methods, warnings, tables with intervals for overall and each aspect,
    per-category scores and confusions, paired comparisons, degenerate answers, category
    frequencies, the rules, a few examples, the prompts."""
    kinds = meta.label_kinds()
    lines = [f"# Evaluation of {meta.recipe} on the {meta.split} split", ""]
    lines += eval_methods.section(rep, meta)
    lines += adequacy.markdown(rep["warnings"])
    lines += ["## Setup", "", *_context(rep, meta), ""]
    present = [a for a in kinds if any(a in rep[m] for m in models(rep))]
    if len(present) == 1:  # one aspect: its tables are the overall ones
        (aspect,) = present
        lines += [f"## Overall ({aspect})", "", *_side_by_side(rep, aspect), ""]
        lines += [*_class_table(rep, aspect), "", *_confusion(rep, aspect)]
    else:
        lines += ["## Overall", "", *_side_by_side(rep, OVERALL), ""]
        for aspect in present:
            lines += [f"## {aspect}", "", *_side_by_side(rep, aspect), ""]
            lines += [*_class_table(rep, aspect), "", *_confusion(rep, aspect)]
    lines += [*_comparisons(rep), *_degenerate(rep), *_frequencies(rep)]
    lines += ["## Scoring rules", ""]
    for rule in [*rules(rep["kind"]), stats_rule(rep), DEGENERATE_RULE]:
        lines += [rule, ""]
    lines += ["## Examples", "", *_examples(predictions, kinds)]
    lines += eval_methods.appendix(meta)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def stats_rule(rep: dict[str, Any]) -> str:
    """How intervals and tests were made, for the scoring rules."""
    boot = rep["bootstrap"]
    partial = {
        "single": "",
        "multi": " and a sign-flip permutation test over documents on Hamming loss",
        "dimensions": " and a sign-flip permutation test over documents on the share of "
        "dimensions at a wrong level",
    }[rep["kind"]]
    return (
        f"Intervals are {100 * boot['level']:.0f}% {stats_method_text(boot['method'])} intervals "
        f"over {boot['unit']}s ({boot['resamples']} resamples, seed {boot['seed']}): a resample "
        "draws documents with replacement and a drawn document brings all its examples, for "
        "every model at once, so differences are paired; every metric is recomputed from each "
        "resample's summed counts, over the categories with gold support in the full set. "
        "Paired tests use the examples both models answered: McNemar's exact test on examples "
        f"answered entirely right (two-sided binomial p-value){partial}."
    )


# ----------------------------------------------------------------------------- plot


def plot(rep: dict[str, Any], kinds: Mapping[str, LabelKind], path: Path) -> Path:
    """The overall key metrics, then per-category F1 of each aspect, one bar per model,
    each with its 95% interval as an error bar; a panel whose values are all 0 says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = models(rep)
    overall = ["label_valid_rate", *KEY_METRICS[rep["kind"]]]
    panels = [(OVERALL, overall)]
    panels += [
        (a, list(k.categories)) for a, k in kinds.items() if any(a in rep[m] for m in labels)
    ]
    tallest = max(len(names) for _, names in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), max(4.8, 0.32 * tallest * len(labels))), dpi=100
    )
    axes = axes if len(panels) > 1 else [axes]
    height = 0.8 / len(labels)
    for ax, (part, names) in zip(axes, panels, strict=True):
        shown = []
        for j, model in enumerate(labels):
            bars = [_bar(rep[model].get(part), part, name) for name in names]
            values = [b[0] for b in bars]
            shown += [v for v in values if v is not None]
            errors = [
                [max(0.0, (v or 0) - lo) if lo is not None else 0 for v, lo, _ in bars],
                [max(0.0, hi - (v or 0)) if hi is not None else 0 for v, _, hi in bars],
            ]
            ys = [i + j * height for i in range(len(names))]
            drawn = ax.barh(
                ys, [v or 0.0 for v in values], height=height, label=model, xerr=errors,
                error_kw={"elinewidth": 0.8, "capsize": 2},
            )  # fmt: skip
            ax.bar_label(drawn, labels=[fmt(v) for v in values], fontsize=7, padding=2)
        ax.set_yticks([i + height * (len(labels) - 1) / 2 for i in range(len(names))])
        ax.set_yticklabels([textwrap.fill(n, 26) for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.15)
        ax.set_title(part if part == OVERALL else f"{part}: F1 per category (95% CI)")
        ax.grid(axis="x", alpha=0.3)
        note = panel_note(shown)
        if note:
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center",
                    fontsize=12, color="0.3")  # fmt: skip
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def panel_note(values: list[float]) -> str | None:
    """What a plot panel says when its bars alone would say nothing: every value 0, or none
    defined."""
    if not values:
        return "no value defined (no labelled example)"
    if not any(values):
        return "every value is 0"
    return None


def _bar(part: dict[str, Any] | None, kind: str, name: str) -> tuple[float | None, Any, Any]:
    """(value, low, high) of one bar; None where undefined."""
    if part is None:
        return None, None, None
    if kind == OVERALL:
        iv = part.get("intervals", {}).get(name)
        value = part.get(name)
    else:
        value = part.get("per_class", {}).get(name, {}).get("f1")
        iv = part.get("per_class_intervals", {}).get(name, {}).get("f1")
    lo, hi = iv if iv else (None, None)
    return value, lo, hi
