"""Agreement between label columns of one table (annotators, or annotators and a model).

Each column holds one multi-label answer per row: a one-hot list (``[1, 0, 1, 0, 0]``, a real
list or text) or human codes (``"1, 3"``), decoded by `llmscisci_cfg.task.labels.decode_label`.
Every category is a yes/no decision, so each statistic is computed per category, by the
libraries that define it: Cohen's kappa per pair of columns (scikit-learn), and with three or
more columns Fleiss' kappa (statsmodels) and Krippendorff's alpha (``krippendorff``, nominal).

**Rows left out.** A value that is missing (None, NaN, an absent JSON key), empty (blank text,
``[]``) or invalid (not a label of the task's size) is never guessed. A pair leaves out each
row where either side is such a value, and counts it under ``"COLUMN: reason"`` (the first
column of the pair that is bad). Fleiss' kappa uses the rows every column labelled; alpha
uses every labelled value (its definition allows a unit with a missing rating).

**Undefined values are null.** When both raters of a pair give the same value on every row of
a category, observed and expected agreement are both 1 and Cohen's kappa is 0/0: it is
reported as null (``None``), never as 1 or 0, and a note says so; its percent agreement is
still 1.0. The same holds for Fleiss' kappa and alpha when every rating of a category is the
same. The mean kappa of a pair averages the defined values only (null when none is).
Agreements are fractions in [0, 1]: ``agreement`` is the exact match of the whole vector.

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
from llmscisci_cfg.task.labels import LabelError, decode_label

KAPPA_RULE = (
    "A kappa or alpha is null when it is undefined: every rating of that category was the "
    "same (for Cohen's kappa, both raters constant and equal, so observed and expected "
    "agreement are both 1). The mean kappa averages the defined values."
)


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two columns over the rows both labelled."""

    a: str
    b: str
    n: int  # rows both columns labelled
    skipped: dict[str, int]  # "COLUMN: reason" -> rows left out
    kappa: dict[str, float | None]  # Cohen's kappa per category; None when undefined
    mean_kappa: float | None
    agreement: float | None  # exact match of the whole label vector
    agreement_per_category: dict[str, float | None]
    confusion: dict[str, list[list[int]]]  # [[tn, fp], [fn, tp]], a as rows, b as columns


@dataclass(frozen=True)
class Agreement:
    """Agreement between the label columns of one table."""

    n: int  # rows in the table
    columns: list[str]
    categories: list[str]
    pairs: list[PairAgreement]
    alpha: dict[str, float | None]  # Krippendorff's alpha per category (3+ columns)
    fleiss: dict[str, float | None]  # Fleiss' kappa per category (3+ columns)
    complete: int  # rows every column labelled (Fleiss' rows)
    notes: list[str]

    def as_json(self) -> dict[str, Any]:
        """``{"n", "pairs": [...], "alpha", "fleiss"}``; undefined values are null."""
        return {
            "n": self.n,
            "pairs": [
                {
                    "a": p.a,
                    "b": p.b,
                    "n": p.n,
                    "skipped": dict(p.skipped),
                    "kappa": dict(p.kappa),
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
        lines = [f"{self.n} rows; columns: {', '.join(self.columns)}"]
        for p in self.pairs:
            skipped = ", ".join(f"{n} {reason}" for reason, n in p.skipped.items()) or "none"
            lines += [
                "",
                f"{p.a} vs {p.b}: {p.n} rows (left out: {skipped})",
                f"  {'category':<{width}}  {'kappa':>6}  {'agree':>6}  "
                f"{'tn':>5} {'fp':>5} {'fn':>5} {'tp':>5}",
            ]
            for c in self.categories:
                (tn, fp), (fn, tp) = p.confusion[c]
                lines.append(
                    f"  {shown[c]:<{width}}  {_num(p.kappa[c]):>6}  "
                    f"{_pct(p.agreement_per_category[c]):>6}  {tn:>5} {fp:>5} {fn:>5} {tp:>5}"
                )
            lines.append(f"  mean kappa {_num(p.mean_kappa)}; exact agreement {_pct(p.agreement)}")
        if self.fleiss or self.alpha:
            lines += [
                "",
                f"all {len(self.columns)} columns: Fleiss' kappa on the {self.complete} rows "
                "every column labelled; alpha on every labelled value",
                f"  {'category':<{width}}  {'fleiss':>6}  {'alpha':>6}",
            ]
            lines += [
                f"  {shown[c]:<{width}}  {_num(self.fleiss.get(c)):>6}  {_num(self.alpha.get(c)):>6}"
                for c in self.categories
            ]
        if self.notes:
            lines += ["", "notes:", *(f"  - {note}" for note in self.notes)]
        return "\n".join(lines)


def agree(
    table: Table,
    columns: Sequence[str],
    categories: Sequence[str] | None = None,
    codes: Mapping[str, int] | None = None,
) -> Agreement:
    """Agreement between ``columns`` of ``table``, per category.

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
    pairs = [_pair(a, b, decoded, names, notes) for a, b in itertools.combinations(columns, 2)]
    complete = sum(
        all(isinstance(decoded[c][i], list) for c in columns) for i in range(len(table.rows))
    )
    fleiss: dict[str, float | None] = {}
    alpha: dict[str, float | None] = {}
    if len(columns) >= 3:
        fleiss = _fleiss(decoded, columns, names, notes)
        alpha = _alpha(decoded, columns, names, notes)
    return Agreement(len(table.rows), columns, names, pairs, alpha, fleiss, complete, notes)


# ----------------------------------------------------------------------------- decoding


def check_columns(table: Table, columns: Sequence[str]) -> list[str]:
    """``columns`` as a list: two or more, none twice, each in ``table`` (else `UserError`)."""
    columns = list(columns)
    if len(columns) < 2:
        raise UserError("agreement needs at least two label columns")
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise UserError(f"column(s) named twice: {', '.join(map(repr, dup))}")
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
    a: str, b: str, decoded: dict[str, list], names: list[str], notes: list[str]
) -> PairAgreement:
    import numpy as np
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

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
    if not left:
        notes.append(f"{a} vs {b}: no row where both are labelled; every value is null")
        none = dict.fromkeys(names)
        zero = {c: [[0, 0], [0, 0]] for c in names}
        return PairAgreement(a, b, 0, dict(skipped), none, None, None, dict(none), zero)
    A, B = np.array(left), np.array(right)
    kappa, per_category, confusion = {}, {}, {}
    for k, name in enumerate(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the undefined case; we report it as null below
            value = cohen_kappa_score(A[:, k], B[:, k], labels=[0, 1], replace_undefined_by=np.nan)
        kappa[name] = _defined(value)
        if kappa[name] is None:
            notes.append(
                f"{a} vs {b}: kappa of {name!r} is null: both gave {int(A[0, k])} on every row"
            )
        per_category[name] = float(accuracy_score(A[:, k], B[:, k]))
        confusion[name] = confusion_matrix(A[:, k], B[:, k], labels=[0, 1]).tolist()
    defined = [v for v in kappa.values() if v is not None]
    mean = float(np.mean(defined)) if defined else None
    exact = float(accuracy_score(A, B))  # multi-label input: exact match of the whole vector
    return PairAgreement(
        a, b, len(left), dict(skipped), kappa, mean, exact, per_category, confusion
    )


def _fleiss(
    decoded: dict[str, list], columns: list[str], names: list[str], notes: list[str]
) -> dict[str, float | None]:
    import numpy as np
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

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
        counts, _ = aggregate_raters(ratings, n_cat=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[name] = _defined(fleiss_kappa(counts, method="fleiss"))
        if out[name] is None:
            notes.append(f"Fleiss' kappa of {name!r} is null: every rating is the same")
    return out


def _alpha(
    decoded: dict[str, list], columns: list[str], names: list[str], notes: list[str]
) -> dict[str, float | None]:
    import krippendorff
    import numpy as np

    out = {}
    for k, name in enumerate(names):
        data = np.array(
            [[v[k] if isinstance(v, list) else np.nan for v in decoded[c]] for c in columns],
            dtype=float,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = krippendorff.alpha(
                    reliability_data=data, level_of_measurement="nominal", value_domain=[0, 1]
                )
        except ValueError:  # no row rated by two columns
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
