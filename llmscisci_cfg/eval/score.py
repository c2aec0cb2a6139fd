"""``llmscisci score``: prediction columns of any table against a gold column, by the task's
answer kind, with intervals and paired comparisons.

Each column is scored on every example with a gold label (an example is a row, or a row and
aspect when ``{aspect}`` names a column per aspect): the kind's metrics (`eval.metrics`),
per-class precision/recall/F1 with intervals, the confusion table, and how many answers were
missing, empty or invalid (all scored as wrong, never guessed). Intervals are bootstrap
intervals over rows (ids, when tables are joined; every aspect of a row moves together), the
same resamples for every column. Every pair of columns is compared on the examples both
answered (a cell that is neither missing nor empty, valid or not): the accuracy difference
(for multi and dimensions answers: exact match) with McNemar's exact test, and every metric's
difference with a paired bootstrap interval (macro-F1 among them).

>>> from llmscisci_cfg.data.table import Table
>>> from pathlib import Path
>>> from llmscisci_cfg.eval.columns import join
>>> from llmscisci_cfg.task.kinds import SingleLabel
>>> rows = [{"g": "a", "m": "a"}, {"g": "b", "m": "a"}, {"g": "b", "m": "?"}]
>>> result = score(join([Table(Path("t.csv"), ["g", "m"], rows)], None),
...                {"x": SingleLabel(("a", "b"))}, "g", ["m"], resamples=10)
>>> column = result.as_json()["columns"]["m"]
>>> column["n"], column["invalid"], column["accuracy"], column["invalid_reasons"]
(3, 1, 0.3333333333333333, {'invalid': 1})
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.eval import adequacy, counts, stats
from llmscisci_cfg.eval.columns import Decoded, Joined, decode_columns
from llmscisci_cfg.eval.metrics import OVERALL, Part, Scored, kind_name, part_metrics, parts, rules
from llmscisci_cfg.task.kinds import LabelKind

#: Per-class values with intervals.
CLASS_KEYS = ("precision", "recall", "f1")


@dataclass
class ScoreResult:
    """The scores of every column, the pairs, warnings and the conventions."""

    kind: str
    aspects: list[str]
    gold: str
    unit: str
    units: int
    examples: int
    columns: dict[str, dict[str, Any]]
    pairs: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    bootstrap: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """``{"columns": {C: {...}}, "pairs": [...]}`` plus the context keys."""
        return {
            "kind": self.kind,
            "aspects": self.aspects,
            "gold": self.gold,
            "unit": self.unit,
            "units": self.units,
            "examples": self.examples,
            "columns": self.columns,
            "pairs": self.pairs,
            "warnings": self.warnings,
            "bootstrap": self.bootstrap,
            "conventions": rules(self.kind),
            "notes": self.notes,
        }

    def as_text(self) -> str:
        return text(self)


def score(
    joined: Joined,
    kinds: Mapping[str, LabelKind],
    gold: str,
    columns: Sequence[str],
    resamples: int = stats.RESAMPLES,
    seed: int = 0,
    method: str = stats.DEFAULT_METHOD,
) -> ScoreResult:
    """Score ``columns`` (names or ``{aspect}`` templates) against ``gold`` over the rows of
    ``joined``; ``kinds``: the aspects to score and their answer kinds."""
    columns = list(dict.fromkeys(columns))
    if gold in columns:
        raise UserError(f"the gold column {gold!r} is also among the columns to score")
    gold_cells = decode_columns(joined, kinds, gold, "--gold")
    found = {c: decode_columns(joined, kinds, c, "--columns") for c in columns}
    examples = [
        (i, a) for i in range(joined.n) for a in kinds if gold_cells[a].values[i] is not None
    ]
    if not examples:
        raise UserError(f"no row has a gold label in {gold!r}")
    notes = _gold_notes(gold_cells)
    rows = {
        c: [
            Scored(a, gold_cells[a].values[i], d[a].values[i], True, doc=joined.ids[i])
            for i, a in examples
        ]
        for c, d in found.items()
    }
    index = stats.units(joined.ids[i] for i, _ in examples)
    kind = kind_name(kinds)
    out, tables, boots = _columns(rows, found, examples, kinds, index, resamples, seed, method)
    main = OVERALL if len(kinds) > 1 else next(iter(kinds))
    same = {c: (tables[(c, main)], boots[(c, main)]) for c in columns}
    pairs = [
        _pair(a, b, rows, found, examples, kinds, resamples, seed, method, index, same)
        for a, b in itertools.combinations(columns, 2)
    ]
    unit = "ids" if joined.id_column else "rows"
    first = out[columns[0]] if columns else {}
    discordant = {
        f"{p['a']} and {p['b']}": p["mcnemar_b"] + p["mcnemar_c"] for p in pairs if p["n"]
    }
    warnings = adequacy.check(
        len(index), unit, first.get("per_class", {}), len(examples), discordant
    )
    boot = {
        "resamples": resamples,
        "seed": seed,
        "unit": "id" if joined.id_column else "row",
        "level": stats.LEVEL,
        "method": method,
    }
    return ScoreResult(
        kind, list(kinds), gold, unit, len(index), len(examples), out, pairs, warnings, boot, notes
    )


def _gold_notes(gold: Mapping[str, Decoded]) -> list[str]:
    notes = []
    for d in gold.values():
        counts_ = d.counts()
        if counts_:
            text = ", ".join(f"{n} {r}" for r, n in sorted(counts_.items()))
            first = f"; first invalid: {d.first_invalid}" if d.first_invalid else ""
            notes.append(f"gold {d.column!r}: {text} left out (no gold label){first}")
    return notes


def _columns(
    rows: Mapping[str, list[Scored]],
    found: Mapping[str, Mapping[str, Decoded]],
    examples: list[tuple[int, str]],
    kinds: Mapping[str, LabelKind],
    index: Mapping[str, int],
    resamples: int,
    seed: int,
    method: str,
) -> tuple[dict[str, dict[str, Any]], dict, dict]:
    """Each column's scores: the pooled part (or the one aspect) flat, each aspect under
    ``aspects`` when there are several. Every column and part is resampled together (the
    tables and bootstraps come back too, keyed ``(column, part)``)."""
    names = [OVERALL] if len(kinds) > 1 else []
    names += [a for a in kinds]
    tables = {}
    for c, mine in rows.items():
        found_parts = parts(mine, kinds)
        for name in names:
            if name in found_parts:
                tables[(c, name)] = stats.PartTables.build(found_parts[name], index)
    boots = stats.bootstrap_parts(tables, resamples, seed)
    out: dict[str, dict[str, Any]] = {}
    for c in rows:
        reasons = [found[c][a].reasons[i] for i, a in examples]
        by_part = {}
        for name in names:
            if (c, name) in tables:
                mine = reasons if name == OVERALL else [
                    r for r, (_, a) in zip(reasons, examples, strict=True) if a == name
                ]  # fmt: skip
                by_part[name] = _part(tables[(c, name)].part, boots[(c, name)], method, mine)
        if len(kinds) == 1:
            out[c] = by_part[next(iter(kinds))]
        else:
            out[c] = by_part[OVERALL] | {"aspects": {a: by_part[a] for a in kinds if a in by_part}}
    return out, tables, boots


def _part(
    part: Part, boot: stats.Bootstrap, method: str, reasons: list[str | None]
) -> dict[str, Any]:
    point = part_metrics(part)
    kind = part.layout.kind
    out: dict[str, Any] = {
        "n": point["n_labelled"],
        "invalid": point["invalid"],
        "invalid_reasons": {
            r: reasons.count(r) for r in ("missing", "empty", "invalid") if r in reasons
        },
    }
    for key in counts.METRICS[kind]:
        out[key] = point[key]
    for key in counts.METRICS[kind]:
        out[f"{key}_ci"] = boot.interval(key, method)
    out["per_class"] = {
        name: {
            **{k: v[k] for k in ("precision", "recall", "f1", "support")},
            **{f"{k}_ci": boot.interval((k, name), method) for k in CLASS_KEYS},
        }
        for name, v in point["per_class"].items()
    }
    if "confusion" in point:
        out["confusion"] = point["confusion"]
    return out


def _pair(
    a: str,
    b: str,
    rows: Mapping[str, list[Scored]],
    found: Mapping[str, Mapping[str, Decoded]],
    examples: list[tuple[int, str]],
    kinds: Mapping[str, LabelKind],
    resamples: int,
    seed: int,
    method: str,
    index: Mapping[str, int],
    same: Mapping[str, tuple[stats.PartTables, stats.Bootstrap]],
) -> dict[str, Any]:
    """Column ``a`` − column ``b`` on the examples both answered. When both answered every
    example, the columns' own bootstrap (the same draws) gives the differences."""
    answered = {c: {asp: d.answered for asp, d in found[c].items()} for c in (a, b)}
    keep = [j for j, (i, asp) in enumerate(examples) if answered[a][asp][i] and answered[b][asp][i]]
    kind = kind_name(kinds)
    empty: dict[str, Any] = {
        "a": a, "b": b, "n": 0, "units": 0, "accuracy_difference": None,
        "accuracy_difference_ci": None, "mcnemar_b": 0, "mcnemar_c": 0, "p_value": None,
        "macro_f1_difference": None, "macro_f1_difference_ci": None, "differences": {},
        "permutation_p_value": None,
    }  # fmt: skip
    if not keep:
        return empty
    if len(keep) == len(examples):
        (ta, ba), (tb, bb) = same[a], same[b]
        diffs = {}
        for k in counts.METRICS[kind]:
            point = (
                None if ba.point[k] is None or bb.point[k] is None else ba.point[k] - bb.point[k]
            )
            jack = ba.jackknife[k] - bb.jackknife[k] if ba.jackknife else None
            iv = stats.interval(ba.resampled[k] - bb.resampled[k], point, method, jack)
            diffs[k] = {"difference": point, "ci": iv}
        tests = stats.paired_tests(ta.part, tb.part, index, seed=seed)
        n, n_units = len(examples), len(index)
    else:
        mine = [rows[a][j] for j in keep]
        theirs = [rows[b][j] for j in keep]

        def pooled(part_rows: list[Scored]) -> Part:
            return parts(part_rows, kinds)[OVERALL]

        comp = stats.compare(mine, theirs, pooled, resamples, seed, method=method)
        diffs = {
            k: {"difference": comp["metric"][k]["difference"], "ci": comp["metric"][k]["interval"]}
            for k in counts.METRICS[kind]
        }
        tests, n, n_units = comp, comp["examples"], comp["documents"]
    perm = tests["permutation"]
    return empty | {
        "n": n,
        "units": n_units,
        "accuracy_difference": diffs["accuracy"]["difference"],
        "accuracy_difference_ci": diffs["accuracy"]["ci"],
        "mcnemar_b": tests["mcnemar"]["b"],
        "mcnemar_c": tests["mcnemar"]["c"],
        "p_value": tests["mcnemar"]["p_value"],
        "macro_f1_difference": diffs["macro_f1"]["difference"],
        "macro_f1_difference_ci": diffs["macro_f1"]["ci"],
        "differences": diffs,
        "permutation_p_value": None if perm is None else perm["p_value"],
    }


# ----------------------------------------------------------------------------- text

KEY_METRICS = {
    "single": ("accuracy", "macro_f1", "micro_f1", "weighted_f1"),
    "multi": ("accuracy", "hamming_loss", "jaccard", "micro_f1", "macro_f1"),
    "dimensions": (
        "dimension_accuracy", "intensity_accuracy", "fn_rate", "fp_rate", "jaccard", "macro_f1",
    ),
}  # fmt: skip


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _ci(iv: list[float] | None, sign: str = "") -> str:
    return "" if iv is None else f" [{iv[0]:{sign}.3f}, {iv[1]:{sign}.3f}]"


def text(result: ScoreResult) -> str:
    """Tables for people: per column its key metrics with 95% intervals, per class F1, the
    pairs, warnings and notes."""
    method = {"bca": "BCa", "percentile": "percentile"}[result.bootstrap["method"]]
    lines = [
        f"{result.examples} examples ({result.kind} answers, aspects {', '.join(result.aspects)}) "
        f"from {result.units} {result.unit}, against {result.gold!r}; 95% {method} bootstrap "
        f"intervals over {result.unit} ({result.bootstrap['resamples']} resamples)",
    ]
    keys = KEY_METRICS[result.kind]
    width = max(len("metric"), *(len(k) for k in keys))
    names = list(result.columns)
    cells = {
        c: [f"{result.columns[c]['n']}", f"{result.columns[c]['invalid']}"]
        + [_num(result.columns[c][k]) + _ci(result.columns[c][f"{k}_ci"]) for k in keys]
        for c in names
    }
    col_w = {c: max(len(c), *(len(x) for x in cells[c])) + 2 for c in names}
    lines += ["", "metric".ljust(width) + "".join(c.rjust(col_w[c]) for c in names)]
    for j, key in enumerate(["n", "invalid", *keys]):
        lines.append(key.ljust(width) + "".join(cells[c][j].rjust(col_w[c]) for c in names))
    first = result.columns[names[0]] if names else {}
    if first.get("per_class"):
        classes = list(first["per_class"])
        cw = max(len("class"), *(len(k) for k in classes))
        lines += ["", "F1 per class (gold support, then each column with its 95% CI):"]
        for k in classes:
            support = first["per_class"][k]["support"]
            row = [
                _num(result.columns[c]["per_class"][k]["f1"])
                + _ci(result.columns[c]["per_class"][k]["f1_ci"])
                for c in names
            ]
            lines.append(f"  {k:<{cw}} {support:>6}  " + "  ".join(row))
    for p in result.pairs:
        if not p["n"]:
            lines += ["", f"{p['a']} vs {p['b']}: no example both answered"]
            continue
        lines += [
            "",
            f"{p['a']} − {p['b']} on the {p['n']} examples both answered: accuracy "
            f"{p['accuracy_difference']:+.3f}{_ci(p['accuracy_difference_ci'], '+')} (McNemar's "
            f"exact test: {p['a']} alone right {p['mcnemar_b']}, {p['b']} alone right "
            f"{p['mcnemar_c']}, p = {p['p_value']:.3g}); macro-F1 "
            f"{p['macro_f1_difference']:+.3f}{_ci(p['macro_f1_difference_ci'], '+')} (paired "
            "bootstrap)",
        ]
    if result.warnings:
        lines += ["", *adequacy.console_lines(result.warnings)]
    if result.notes:
        lines += ["", "notes:", *(f"  - {n}" for n in result.notes)]
    lines += [
        "",
        "An empty, missing or invalid answer counts as wrong (never guessed); averages run over "
        "the classes with gold support (scikit-learn's labels=, zero_division=0).",
    ]
    return "\n".join(lines)
