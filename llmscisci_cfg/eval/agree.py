"""Agreement between label columns (annotators, or annotators and a model), by answer kind.

Agreement is computed per *item*, with the libraries that define each statistic: Cohen's
kappa per pair of columns (scikit-learn), and with three or more columns Fleiss' kappa
(statsmodels) and Krippendorff's alpha (``krippendorff``). What an item is follows the
answer kind of the task (``--task``; without one, columns hold one-hot lists or human codes
and are read as ``multi``):

- ``single``: one item, the category (nominal: Cohen's and Fleiss' kappa over the
  categories, nominal alpha); the confusion table is category × category;
- ``multi``: each category, a yes/no decision (nominal); 2 × 2 tables;
- ``dimensions``: each dimension, its level with ``not present`` the lowest (Cohen's kappa,
  and linearly weighted kappa for the order; Fleiss' kappa over the levels; **ordinal**
  alpha); level × level tables.

Columns are read from one table or several joined on an id column, and every aspect of a
task at once (`eval.columns`: ``{aspect}`` in a column name); the result is one `Agreement`
per aspect.

**Rows left out.** A value that is missing (None, NaN, an absent JSON key, no row for that
id), empty (blank text, ``[]``) or invalid (not a label of the task) is never guessed. A pair
leaves out each row where either side is such a value, and counts it under ``"COLUMN:
reason"`` (the first column of the pair that is bad). Fleiss' kappa uses the rows every
column labelled; alpha uses every labelled value (its definition allows a unit with a missing
rating).

**Undefined values are null.** When both raters of a pair give the same value on every row of
an item, observed and expected agreement are both 1 and Cohen's kappa is 0/0: it is
reported as null (``None``), never as 1 or 0, and a note says so; its percent agreement is
still 1.0. The same holds for Fleiss' kappa and alpha when every rating of an item is the
same. The mean kappa of a pair averages the defined values only (null when none is).
Agreements are fractions in [0, 1]: ``agreement`` is the exact match of the whole answer.

>>> from pathlib import Path
>>> from llmscisci_cfg.data.table import Table
>>> rows = [{"a": "[1, 0]", "b": "1"}, {"a": "[0, 1]", "b": "2"}, {"a": "[1, 1]", "b": ""}]
>>> result = agree(Table(Path("t.csv"), ["a", "b"], rows), ["a", "b"])
>>> pair = result.pairs[0]
>>> (pair.n, pair.skipped, pair.kappa, pair.agreement)
(2, {'b: empty': 1}, {'1': 1.0, '2': 1.0}, 1.0)

Light at import: numpy, scikit-learn, statsmodels and krippendorff load when `agree` runs.
"""

from __future__ import annotations

import difflib
import itertools
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.data.table import Table
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.task.kinds import LabelKind
from llmscisci_cfg.task.labels import LabelError, decode_label

KAPPA_RULE = (
    "A kappa or alpha is null when it is undefined: every rating of that item was the "
    "same (for Cohen's kappa, both raters constant and equal, so observed and expected "
    "agreement are both 1). The mean kappa averages the defined values."
)


@dataclass(frozen=True)
class Scale:
    """What agreement is computed on: ``items`` (the single label, each category, or each
    dimension), each taking the values ``0 .. len(values) - 1`` named ``values``."""

    kind: str
    items: tuple[str, ...]
    values: tuple[str, ...]

    @property
    def ordinal(self) -> bool:
        return self.kind == "dimensions"

    @property
    def levels(self) -> int:
        return len(self.values)


def scale_of(kind: LabelKind) -> Scale:
    """The `Scale` of an answer kind."""
    if kind.kind == "single":
        return Scale("single", ("category",), tuple(kind.categories))
    if kind.kind == "dimensions":
        return Scale("dimensions", tuple(kind.categories), ("not present", *kind.levels))
    return Scale("multi", tuple(kind.categories), ("0", "1"))


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two columns over the rows both labelled."""

    a: str
    b: str
    n: int  # rows both columns labelled
    skipped: dict[str, int]  # "COLUMN: reason" -> rows left out
    kappa: dict[str, float | None]  # Cohen's kappa per item; None when undefined
    mean_kappa: float | None
    agreement: float | None  # exact match of the whole answer
    agreement_per_category: dict[str, float | None]
    confusion: dict[str, list[list[int]]]  # per item: a's values as rows, b's as columns
    weighted_kappa: dict[str, float | None] | None = None  # dimensions: linear weights


@dataclass(frozen=True)
class Agreement:
    """Agreement between the label columns of one table (one aspect)."""

    n: int  # rows in the table
    columns: list[str]
    categories: list[str]  # the items
    pairs: list[PairAgreement]
    alpha: dict[str, float | None]  # Krippendorff's alpha per item (3+ columns)
    fleiss: dict[str, float | None]  # Fleiss' kappa per item (3+ columns)
    complete: int  # rows every column labelled (Fleiss' rows)
    notes: list[str]
    kind: str = "multi"
    values: tuple[str, ...] = ("0", "1")  # the values an item takes

    @property
    def alpha_level(self) -> str:
        return "ordinal" if self.kind == "dimensions" else "nominal"

    def as_json(self) -> dict[str, Any]:
        """``{"n", "kind", "alpha_level", "pairs": [...], "alpha", "fleiss"}``; undefined
        values are null."""
        return {
            "n": self.n,
            "kind": self.kind,
            "alpha_level": self.alpha_level,
            "pairs": [
                {
                    "a": p.a,
                    "b": p.b,
                    "n": p.n,
                    "skipped": dict(p.skipped),
                    "kappa": dict(p.kappa),
                    "weighted_kappa": None if p.weighted_kappa is None else dict(p.weighted_kappa),
                    "mean_kappa": p.mean_kappa,
                    "agreement": p.agreement,
                    "agreement_per_category": dict(p.agreement_per_category),
                    "confusion": {c: [list(r) for r in m] for c, m in p.confusion.items()},
                }
                for p in self.pairs
            ],
            "alpha": dict(self.alpha),
            "fleiss": dict(self.fleiss),
        }

    def as_text(self) -> str:
        """Compact tables for people: one per pair, one for the multi-rater statistics."""
        shown = {c: _short(c) for c in self.categories}
        width = max(len("category"), *(len(c) for c in shown.values()))
        lines = [f"{self.n} rows ({self.kind} answers); columns: {', '.join(self.columns)}"]
        for p in self.pairs:
            skipped = ", ".join(f"{n} {reason}" for reason, n in p.skipped.items()) or "none"
            lines += ["", f"{p.a} vs {p.b}: {p.n} rows (left out: {skipped})"]
            if self.kind == "multi":
                lines.append(
                    f"  {'category':<{width}}  {'kappa':>6}  {'agree':>6}  "
                    f"{'tn':>5} {'fp':>5} {'fn':>5} {'tp':>5}"
                )
                for c in self.categories:
                    (tn, fp), (fn, tp) = p.confusion[c]
                    lines.append(
                        f"  {shown[c]:<{width}}  {_num(p.kappa[c]):>6}  "
                        f"{_pct(p.agreement_per_category[c]):>6}  {tn:>5} {fp:>5} {fn:>5} {tp:>5}"
                    )
            elif self.kind == "dimensions":
                lines.append(
                    f"  {'dimension':<{width}}  {'kappa':>6}  {'w.kappa':>7}  {'agree':>6}"
                )
                for c in self.categories:
                    lines.append(
                        f"  {shown[c]:<{width}}  {_num(p.kappa[c]):>6}  "
                        f"{_num((p.weighted_kappa or {}).get(c)):>7}  "
                        f"{_pct(p.agreement_per_category[c]):>6}"
                    )
            else:
                lines += _matrix_lines(p.confusion["category"], self.values, p.a, p.b)
                lines.append(f"  kappa {_num(p.kappa['category'])}")
            lines.append(f"  mean kappa {_num(p.mean_kappa)}; exact agreement {_pct(p.agreement)}")
        if self.fleiss or self.alpha:
            lines += [
                "",
                f"all {len(self.columns)} columns: Fleiss' kappa on the {self.complete} rows "
                f"every column labelled; {self.alpha_level} alpha on every labelled value",
                f"  {'category':<{width}}  {'fleiss':>6}  {'alpha':>6}",
            ]
            lines += [
                f"  {shown[c]:<{width}}  {_num(self.fleiss.get(c)):>6}  {_num(self.alpha.get(c)):>6}"
                for c in self.categories
            ]
        if self.notes:
            lines += ["", "notes:", *(f"  - {note}" for note in self.notes)]
        return "\n".join(lines)


def _matrix_lines(matrix: list[list[int]], values: Sequence[str], a: str, b: str) -> list[str]:
    """A category × category table: ``a``'s answers as rows, ``b``'s as columns."""
    names = [_short(v, 16) for v in values]
    corner = f"{a} \\ {b}"
    width = max(len(corner), *(len(n) for n in names))
    cell = max(5, *(len(n) for n in names))
    lines = [f"  {corner:<{width}}  " + " ".join(f"{n:>{cell}}" for n in names)]
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"  {name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row))
    return lines


def agree(
    table: Table,
    columns: Sequence[str],
    categories: Sequence[str] | None = None,
    codes: Mapping[str, int] | None = None,
) -> Agreement:
    """Agreement between ``columns`` of ``table`` holding one-hot lists or human codes
    (``multi``), per category.

    ``categories`` names the categories in label order; without it the size comes from the
    first valid one-hot value and the categories are named ``1``..``n``. ``codes`` maps a
    human code to a 0-based category index (default ``1``..``n`` in order).
    """
    columns = check_columns(table, columns)
    n = len(categories) if categories else _infer_size(table, columns, codes)
    names = list(categories) if categories else [str(i + 1) for i in range(n)]
    if len(set(names)) != len(names):
        raise UserError(
            f"categories repeat: {', '.join(sorted({c for c in names if names.count(c) > 1}))}"
        )
    notes: list[str] = []
    decoded = {c: _decode_column(table, c, n, codes, notes) for c in columns}
    for column, labels in decoded.items():
        given = [v for v in labels if v not in ("missing", "empty")]
        if given and "invalid" in given and not any(isinstance(v, list) for v in given):
            note = next(x for x in notes if x.startswith(f"column {column!r}"))
            raise UserError(
                f"{table.path}: none of the {len(given)} labels in {note}; are there "
                f"{n} categories ({', '.join(names)})? check --categories or --task/--aspect"
            )
    scale = Scale("multi", tuple(names), ("0", "1"))
    return measure(len(table.rows), columns, decoded, scale, notes)


def agree_kind(
    n_rows: int, kind: LabelKind, decoded: Mapping[str, Any], notes: Sequence[str] = ()
) -> Agreement:
    """Agreement between columns decoded with ``kind`` (`eval.columns.Decoded` per column:
    values of the kind, or None with a reason)."""
    scale = scale_of(kind)
    values = {}
    for column, d in decoded.items():
        values[column] = [
            reason if v is None else ([v] if scale.kind == "single" else list(v))
            for v, reason in zip(d.values, d.reasons, strict=True)
        ]
    notes = list(notes)
    for column, d in decoded.items():
        counts = d.counts()
        if counts:
            text = ", ".join(f"{k} {reason}" for reason, k in sorted(counts.items()))
            first = f"; first invalid: {d.first_invalid}" if d.first_invalid else ""
            notes.append(f"column {column!r}: {text}{first}")
    return measure(n_rows, list(decoded), values, scale, notes)


def measure(
    n_rows: int,
    columns: list[str],
    decoded: Mapping[str, list[list[int] | str]],
    scale: Scale,
    notes: list[str],
) -> Agreement:
    """Every statistic of `Agreement` from decoded columns: per row a list of one value per
    item, or the reason there is none (``missing``, ``empty``, ``invalid``)."""
    pairs = [_pair(a, b, decoded, scale, notes) for a, b in itertools.combinations(columns, 2)]
    complete = sum(all(isinstance(decoded[c][i], list) for c in columns) for i in range(n_rows))
    fleiss: dict[str, float | None] = {}
    alpha: dict[str, float | None] = {}
    if len(columns) >= 3:
        fleiss = _fleiss(decoded, columns, scale, notes)
        alpha = _alpha(decoded, columns, scale, notes)
    return Agreement(
        n_rows, columns, list(scale.items), pairs, alpha, fleiss, complete, notes, scale.kind,
        scale.values,
    )  # fmt: skip


# ----------------------------------------------------------------------------- decoding


def check_columns(table: Table, columns: Sequence[str]) -> list[str]:
    """``columns`` as a list: two or more, none twice, each in ``table`` (else `UserError`)."""
    columns = list(columns)
    if len(columns) < 2:
        raise UserError("agreement needs at least two label columns")
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise UserError(
            f"column(s) named twice: {', '.join(map(repr, dup))}; the same column of two "
            "tables is named FILE:COLUMN (e.g. a.csv:intent_pred b.csv:intent_pred)"
        )
    problems = []
    for name in columns:
        if name not in table.columns:
            close = difflib.get_close_matches(name, table.columns, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"{table.path}: no column {name!r}{hint}; columns: {', '.join(table.columns)}"
            )
    if problems:
        raise UserError("\n".join(problems))
    return columns


def _infer_size(table: Table, columns: list[str], codes: Mapping[str, int] | None) -> int:
    """The length of the first valid one-hot value (a list, or text in brackets)."""
    for row in table.rows:
        for c in columns:
            value = row[c]
            if isinstance(value, str) and value.strip().startswith("["):
                size = len(value.strip()[1:-1].split(","))
            elif isinstance(value, (list, tuple)) and value:
                size = len(value)
            else:
                continue
            try:
                decode_label(value, "auto", size, codes)
            except LabelError:
                continue
            return size
    raise UserError(
        f"{table.path}: no one-hot label like [1, 0, 1, 0, 0] in {', '.join(columns)}, so the "
        "number of categories is unknown; name them (--categories, or --task with --aspect)"
    )


def _decode_column(
    table: Table, column: str, n: int, codes: Mapping[str, int] | None, notes: list[str]
) -> list[list[int] | str]:
    """Each row's label, or the reason it has none (``missing``, ``empty``, ``invalid``)."""
    out: list[list[int] | str] = []
    first_bad = None
    for i, row in enumerate(table.rows):
        value = row[column]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append("missing")
        elif (isinstance(value, str) and not value.strip()) or (
            isinstance(value, (list, tuple)) and not value
        ):
            out.append("empty")
        else:
            try:
                out.append(decode_label(value, "auto", n, codes))
            except LabelError as exc:
                out.append("invalid")
                first_bad = first_bad or f"{table.where(i)}: {exc}"
    bad = Counter(v for v in out if isinstance(v, str))
    if bad:
        counts = ", ".join(f"{k} {reason}" for reason, k in sorted(bad.items()))
        notes.append(
            f"column {column!r}: {counts}" + (f"; first invalid: {first_bad}" if first_bad else "")
        )
    return out


# ----------------------------------------------------------------------------- statistics


def _pair(
    a: str, b: str, decoded: Mapping[str, list], scale: Scale, notes: list[str]
) -> PairAgreement:
    import numpy as np
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

    names, labels = list(scale.items), list(range(scale.levels))
    skipped: Counter[str] = Counter()
    left, right = [], []
    for x, y in zip(decoded[a], decoded[b], strict=True):
        if isinstance(x, str):
            skipped[f"{a}: {x}"] += 1
        elif isinstance(y, str):
            skipped[f"{b}: {y}"] += 1
        else:
            left.append(x)
            right.append(y)
    weighted: dict[str, float | None] | None = {} if scale.ordinal else None
    if not left:
        notes.append(f"{a} vs {b}: no row where both are labelled; every value is null")
        none = dict.fromkeys(names)
        zero = {c: [[0] * scale.levels for _ in labels] for c in names}
        return PairAgreement(
            a, b, 0, dict(skipped), none, None, None, dict(none), zero,
            None if weighted is None else dict(none),
        )  # fmt: skip
    A, B = np.array(left), np.array(right)
    kappa, per_category, confusion = {}, {}, {}
    for k, name in enumerate(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the undefined case; we report it as null below
            value = cohen_kappa_score(A[:, k], B[:, k], labels=labels, replace_undefined_by=np.nan)
            if weighted is not None:
                weighted[name] = _defined(
                    cohen_kappa_score(
                        A[:, k],
                        B[:, k],
                        labels=labels,
                        weights="linear",
                        replace_undefined_by=np.nan,
                    )  # fmt: skip
                )
        kappa[name] = _defined(value)
        if kappa[name] is None:
            shown_value = scale.values[int(A[0, k])]
            notes.append(
                f"{a} vs {b}: kappa of {name!r} is null: both gave {shown_value!r} on every row"
                if scale.kind != "multi"
                else f"{a} vs {b}: kappa of {name!r} is null: both gave {int(A[0, k])} on every row"
            )
        per_category[name] = float(accuracy_score(A[:, k], B[:, k]))
        confusion[name] = confusion_matrix(A[:, k], B[:, k], labels=labels).tolist()
    defined = [v for v in kappa.values() if v is not None]
    mean = float(np.mean(defined)) if defined else None
    exact = float(np.mean((A == B).all(axis=1)))  # exact match of the whole answer
    return PairAgreement(
        a, b, len(left), dict(skipped), kappa, mean, exact, per_category, confusion, weighted
    )


def _fleiss(
    decoded: Mapping[str, list], columns: list[str], scale: Scale, notes: list[str]
) -> dict[str, float | None]:
    import numpy as np
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    names = list(scale.items)
    rows = [
        i
        for i in range(len(decoded[columns[0]]))
        if all(isinstance(decoded[c][i], list) for c in columns)
    ]
    if not rows:
        notes.append("Fleiss' kappa is null: no row is labelled by every column")
        return dict.fromkeys(names)
    out = {}
    for k, name in enumerate(names):
        ratings = np.array([[decoded[c][i][k] for c in columns] for i in rows])
        counts, _ = aggregate_raters(ratings, n_cat=scale.levels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[name] = _defined(fleiss_kappa(counts, method="fleiss"))
        if out[name] is None:
            notes.append(f"Fleiss' kappa of {name!r} is null: every rating is the same")
    return out


def _alpha(
    decoded: Mapping[str, list], columns: list[str], scale: Scale, notes: list[str]
) -> dict[str, float | None]:
    import krippendorff
    import numpy as np

    level = "ordinal" if scale.ordinal else "nominal"
    out = {}
    for k, name in enumerate(scale.items):
        data = np.array(
            [[v[k] if isinstance(v, list) else np.nan for v in decoded[c]] for c in columns],
            dtype=float,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = krippendorff.alpha(
                    reliability_data=data,
                    level_of_measurement=level,
                    value_domain=list(range(scale.levels)),
                )
        except ValueError:  # no row rated by two columns, or one value in the domain
            value = math.nan
        out[name] = _defined(value)
        if out[name] is None:
            notes.append(
                f"alpha of {name!r} is null: every rating is the same, or no row has two ratings"
            )
    return out


def _defined(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _short(name: str, limit: int = 40) -> str:
    """A category name cut to ``limit`` characters for the text tables (JSON keeps it whole)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _num(value: float | None) -> str:
    return "null" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "null" if value is None else f"{100 * value:.1f}%"
