"""The alternative annotator test (alt-test): may a model's labels replace a human coder's?

Calderon, Reichart and Dror, "The Alternative Annotator Test for LLM-as-a-Judge: How to
Statistically Justify Replacing Human Annotators with LLMs", ACL 2025 (arXiv:2501.10970).
The conventions below were checked against the authors' reference implementation and their
README/FAQ, which follows the paper's FAQ (github.com/nitaytech/AltTest: ``alt_test`` in
``alt_test_example.ipynb``); this is our own code. Where we go beyond it (zero variance, ties
within `TIE`, refusals) the text says so.

**The procedure, as implemented here.** The model is ``f``; the human annotators are
``h_1 .. h_m`` (at least `MIN_HUMANS`). For each annotator ``j`` in turn (leave one out):

1. *Items.* ``I_j`` holds the items that ``j`` annotated, the model annotated, and at least one
   other human annotated; ``n_j = |I_j|``. A missing answer (None) is no annotation.
2. *Alignment with the rest.* On item ``i``, ``S(x) = mean_k alignment(x, h_k(i))`` over the
   other humans ``k != j`` who annotated ``i``, for ``x = f(i)`` and for ``x = h_j(i)``.
3. *Advantage indicators; ties count for both.* ``W^f_i = 1`` when ``S(f(i)) >= S(h_j(i))``,
   ``W^h_i = 1`` when ``S(h_j(i)) >= S(f(i))`` (else 0): on a tie both are 1. Scores within
   `TIE` of each other are a tie (means of equal alignments can differ in the last bit).
4. *Advantage probabilities.* ``rho^f_j = mean W^f`` (the model's), ``rho^h_j = mean W^h``.
5. *One-sided paired t-test with margin epsilon.* ``H0: rho^f_j <= rho^h_j - epsilon`` against
   ``H1: rho^f_j > rho^h_j - epsilon``. With ``d_i = W^f_i - W^h_i`` (in {-1, 0, 1}),
   ``t = (mean(d) + epsilon) / (sd(d) / sqrt(n_j))`` (sd with ddof 1) and
   ``p = P(T_{n_j - 1} >= t)``. This is ``scipy.stats.ttest_1samp(-d, epsilon,
   alternative="less")``, the authors' call, with the sign of ``t`` turned so that a large
   ``t`` favours the model.
6. *Zero variance* (every ``d_i`` equal, e.g. every item a tie): ``t`` is undefined (None)
   and ``p`` is the limit of the test: 0 when ``mean(d) + epsilon > 0`` (the data sit on the
   model's side of the margin), 1 otherwise (on the margin or below: no evidence against H0).
   Never NaN.
7. *Minimum items.* The t-test's normality needs ``n_j >= 30`` (the authors' guidance;
   `MIN_ITEMS`). An annotator with fewer items is *not tested*, as in the authors' code: it
   still serves as one of "the other humans" for the rest, its entry says ``tested: false``
   and a note names it. No testable annotator at all is a `UserError`. The paper suggests a
   Wilcoxon signed-rank test below 30 items; we do not run one.
8. *Multiple comparisons.* The p-values of the tested annotators are corrected together by
   Benjamini–Yekutieli at ``q`` (default 0.05), through statsmodels' ``fdr_by``: ``H0_j`` is
   rejected when its adjusted p-value is ``<= q``. A rejected ``H0_j`` means the model *won*
   against annotator ``j``.
9. *Decision.* The winning rate ``omega`` is the share of tested annotators the model won
   against; the model passes, and may replace a human coder, when ``omega >= 0.5``. The
   average advantage probability ``rho = mean_j rho^f_j`` over the same annotators compares
   models (higher is better); it is not part of the decision.

epsilon is the cost-benefit margin granted to the model. The paper's rule of thumb:
0.2 when the annotators are experts, 0.15 for skilled annotators (trained students or
workers), 0.1 for crowd workers, and smaller when human agreement is low.
`DEFAULT_EPSILON` is 0.2, the authors' default. The paper recommends at least three human
annotators (with two, the test only asks which of the two the model is closer to) and 50-100
items; fewer than `MIN_HUMANS` annotators is a `UserError`.

**Alignment functions** (``alignment(a, b) -> float`` in [0, 1], named in the result):
``accuracy`` for single-label answers (1 when equal, else 0), ``1-hamming`` for multi-label
one-hot lists (1 - Hamming distance / number of categories) and ``dimension_agreement`` for
"dimensions" answers (a list of ints, 0 = absent, k = level k: the share of dimensions whose
value agrees). On a 0/1 list the last two give the same number; they differ in what they
accept.

>>> model = ["a", "a", "b", "b"]
>>> humans = {"x": ["a", "a", "b", "a"], "y": ["a", "b", "b", "b"], "z": ["a", "a", "a", "b"]}
>>> result = alt_test(model, humans, "accuracy", epsilon=0.2, min_items=2)
>>> [(a.annotator, a.model_advantage, a.annotator_advantage) for a in result.annotators]
[('x', 1.0, 0.75), ('y', 1.0, 0.75), ('z', 1.0, 0.75)]

Table cells become answers through the task's codecs when a task is named (`alt_test_kind`:
the alignment follows the answer kind); without one, `read_answers` guesses the reading from
the cells and picks the alignment.
Light at import: numpy, scipy and statsmodels load when a test runs.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.data.table import Table
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.eval.agree import check_columns
from llmscisci_cfg.task.labels import LabelError, decode_label, shown

#: The paper recommends at least three human annotators.
MIN_HUMANS = 3
#: Items per tested annotator: the paper's minimum for the t-test's normality assumption.
MIN_ITEMS = 30
#: The authors' default margin (the paper's value for expert annotators).
DEFAULT_EPSILON = 0.2
#: The false discovery rate of the Benjamini–Yekutieli correction.
DEFAULT_Q = 0.05
#: The winning rate at which the model passes.
PASS_RATE = 0.5
#: Alignment scores this close count as a tie.
TIE = 1e-9

#: An answer: a category name (single label) or a list of ints (one-hot or dimension levels).
Answer = str | tuple[int, ...]


# ----------------------------------------------------------------------------- alignments


def accuracy(a: Any, b: Any) -> float:
    """1.0 when the two answers are equal, else 0.0 (single-label answers)."""
    return 1.0 if a == b else 0.0


def one_minus_hamming(a: Sequence[int], b: Sequence[int]) -> float:
    """1 - Hamming distance / n between two one-hot lists of the same length n.

    >>> one_minus_hamming([1, 0, 1, 0], [1, 1, 0, 0])
    0.5
    """
    _same_length(a, b)
    if any(v not in (0, 1) for v in (*a, *b)):
        raise ValueError(f"1-hamming needs 0/1 lists, got {list(a)} and {list(b)}")
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def dimension_agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """The share of dimensions whose value agrees (0 = absent, k = level k; absent is a level).

    >>> dimension_agreement([0, 2, 3], [0, 2, 1])
    0.6666666666666666
    """
    _same_length(a, b)
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def _same_length(a: Sequence[int], b: Sequence[int]) -> None:
    if len(a) != len(b) or not a:
        raise ValueError(f"answers of different or zero length: {list(a)} and {list(b)}")


ALIGNMENTS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "1-hamming": one_minus_hamming,
    "dimension_agreement": dimension_agreement,
}


# ----------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class AnnotatorTest:
    """One left-out annotator: the model against this annotator on ``n`` items."""

    annotator: str
    n: int  # items this annotator, the model and at least one other human annotated
    model_advantage: float | None  # rho^f_j; None when n is 0
    annotator_advantage: float | None  # rho^h_j; None when n is 0
    t: float | None  # None when not tested or the differences have zero variance
    p_value: float | None  # one-sided; None when not tested (n < min_items)
    p_adjusted: float | None  # Benjamini–Yekutieli; None when not tested
    rejected: bool | None  # H0 rejected: the model won; None when not tested

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "annotator": self.annotator,
            "n": self.n,
            "tested": self.tested,
            "model_advantage": self.model_advantage,
            "annotator_advantage": self.annotator_advantage,
            "t": self.t,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "rejected": self.rejected,
        }


@dataclass(frozen=True)
class AltTest:
    """The outcome of the alt-test of one model against a group of human annotators."""

    model: str  # the model's name (its column)
    alignment: str
    epsilon: float
    q: float
    min_items: int
    annotators: tuple[AnnotatorTest, ...]
    winning_rate: float  # omega: share of tested annotators whose H0 is rejected
    average_advantage_probability: float  # rho: mean rho^f over the tested annotators
    notes: tuple[str, ...] = ()

    @property
    def tested(self) -> int:
        return sum(a.tested for a in self.annotators)

    @property
    def won(self) -> int:
        return sum(bool(a.rejected) for a in self.annotators)

    @property
    def passed(self) -> bool:
        return self.winning_rate >= PASS_RATE

    def sentence(self) -> str:
        """The decision in one sentence a reviewer can read."""
        verdict = "may replace" if self.passed else "may not replace"
        sign = "≥" if self.passed else "<"
        skipped = len(self.annotators) - self.tested
        untested = (
            f" ({skipped} more not tested: fewer than {self.min_items} items)" if skipped else ""
        )
        return (
            f"The model's labels ({self.model}) {verdict} a human coder's (alt-test of "
            f"Calderon, Reichart and Dror 2025, ε = {self.epsilon:g}, q = {self.q:g}: it won "
            f"against {self.won} of {self.tested} annotators{untested}, ω = "
            f"{self.winning_rate:.2f} {sign} {PASS_RATE}; average advantage probability ρ = "
            f"{self.average_advantage_probability:.2f})."
        )

    def as_json(self) -> dict[str, Any]:
        """One object: the decision, its parameters and one entry per annotator."""
        return {
            "test": "alt-test",
            "model": self.model,
            "alignment": self.alignment,
            "epsilon": self.epsilon,
            "q": self.q,
            "min_items": self.min_items,
            "winning_rate": self.winning_rate,
            "average_advantage_probability": self.average_advantage_probability,
            "passed": self.passed,
            "won": self.won,
            "tested": self.tested,
            "annotators": [a.as_json() for a in self.annotators],
        }

    def as_text(self) -> str:
        """A per-annotator table, the two summary numbers, the decision and the notes."""
        width = max(len("annotator"), *(len(a.annotator) for a in self.annotators))
        lines = [
            f"alt-test of {self.model} against {len(self.annotators)} human annotators "
            f"(leave one out; alignment {self.alignment}, ε = {self.epsilon:g}, "
            f"Benjamini–Yekutieli q = {self.q:g})",
            "",
            f"  {'annotator':<{width}}  {'items':>5}  {'ρ model':>7}  {'ρ human':>7}  "
            f"{'t':>7}  {'p':>7}  {'p (BY)':>7}  won",
        ]
        for a in self.annotators:
            won = "—" if a.rejected is None else "yes" if a.rejected else "no"
            lines.append(
                f"  {a.annotator:<{width}}  {a.n:>5}  {_num(a.model_advantage):>7}  "
                f"{_num(a.annotator_advantage):>7}  {_num(a.t):>7}  {_p(a.p_value):>7}  "
                f"{_p(a.p_adjusted):>7}  {won}"
            )
        lines += [
            "",
            f"winning rate ω = {self.winning_rate:.2f} ({self.won} of {self.tested} tested)",
            f"average advantage probability ρ = {self.average_advantage_probability:.3f}",
            self.sentence(),
        ]
        if self.notes:
            lines += ["", "notes:", *(f"  - {note}" for note in self.notes)]
        return "\n".join(lines)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


# ----------------------------------------------------------------------------- the test


def alt_test(
    model: Sequence[Any],
    humans: Mapping[str, Sequence[Any]],
    alignment: str | Callable[[Any, Any], float] = "accuracy",
    epsilon: float = DEFAULT_EPSILON,
    q: float = DEFAULT_Q,
    *,
    min_items: int = MIN_ITEMS,
    model_name: str = "model",
    notes: Sequence[str] = (),
) -> AltTest:
    """The alt-test of ``model`` against the ``humans`` (name -> answers), item by item.

    Every sequence holds one answer per item, in the same item order; None is a missing
    answer. ``alignment`` is a name of `ALIGNMENTS` or a function ``(a, b) -> float`` (higher
    is closer). ``notes`` are carried into the result (the table reader's notes).
    """
    name, align = _alignment(alignment)
    _check_arguments(model, humans, epsilon, q, min_items)
    notes = list(notes)
    found = {j: _indicators(model, humans, j, align) for j in humans}
    stats = {j: _t_test(wf, wh, epsilon) for j, (wf, wh) in found.items() if len(wf) >= min_items}
    if not stats:
        counts = ", ".join(f"{j} {len(wf)}" for j, (wf, _) in found.items())
        raise UserError(
            f"the alt-test needs at least {min_items} items per annotator that the model and "
            f"another annotator also labelled (the t-test's normality assumption, Calderon et "
            f"al. 2025); no annotator has that many (items: {counts}). Label more items; the "
            "paper suggests 50-100."
        )
    for j, (wf, _) in found.items():
        if j not in stats:
            notes.append(
                f"annotator {j!r} was not tested: {len(wf)} items < {min_items} (still used "
                "as one of the other annotators)"
            )
    for j, (t, p) in stats.items():
        if t is None:
            notes.append(
                f"annotator {j!r}: the model-minus-annotator difference is the same on every "
                f"item (zero variance), so t is undefined; p = {p:g} by the test's limit"
            )
    adjusted, rejected = _benjamini_yekutieli([p for _, p in stats.values()], q)
    by_j = dict(zip(stats, zip(adjusted, rejected, strict=True), strict=True))
    entries = []
    for j, (wf, wh) in found.items():
        n = len(wf)
        t, p = stats.get(j, (None, None))
        p_adj, rej = by_j.get(j, (None, None))
        entries.append(
            AnnotatorTest(
                j,
                n,
                sum(wf) / n if n else None,
                sum(wh) / n if n else None,
                t,
                p,
                p_adj,
                rej,
            )
        )
    tested = [e for e in entries if e.tested]
    omega = sum(bool(e.rejected) for e in tested) / len(tested)
    rho = math.fsum(e.model_advantage for e in tested) / len(tested)
    return AltTest(
        model_name, name, epsilon, q, min_items, tuple(entries), omega, rho, tuple(notes)
    )


def _alignment(alignment: str | Callable[[Any, Any], float]) -> tuple[str, Callable]:
    if callable(alignment):
        return getattr(alignment, "__name__", "custom"), alignment
    if alignment not in ALIGNMENTS:
        raise UserError(f"unknown alignment {alignment!r}; known: {', '.join(ALIGNMENTS)}")
    return alignment, ALIGNMENTS[alignment]


def _check_arguments(
    model: Sequence[Any], humans: Mapping[str, Sequence[Any]], epsilon: float, q: float, k: int
) -> None:
    _require_humans(list(humans))
    for j, answers in humans.items():
        if len(answers) != len(model):
            raise ValueError(f"{j}: {len(answers)} answers for {len(model)} items")
    if not 0 <= epsilon < 1:
        raise UserError(f"epsilon must be in [0, 1), got {epsilon:g}")
    if not 0 < q < 1:
        raise UserError(f"q must be in (0, 1), got {q:g}")
    if k < 2:
        raise ValueError(f"min_items must be at least 2 (a t-test needs a variance), got {k}")


def _require_humans(humans: list[str]) -> None:
    if len(humans) < MIN_HUMANS:
        given = f" ({', '.join(humans)})" if humans else ""
        raise UserError(
            f"the alt-test needs at least {MIN_HUMANS} human annotators, got {len(humans)}"
            f"{given}; Calderon et al. (2025) recommend three or more: with two, the test only "
            "asks which of the two the model is closer to, with no consensus to compare against"
        )


def _indicators(
    model: Sequence[Any], humans: Mapping[str, Sequence[Any]], j: str, align: Callable
) -> tuple[list[int], list[int]]:
    """``W^f`` and ``W^h`` over the items of annotator ``j`` (steps 1-3 of the docstring)."""
    wf, wh = [], []
    for i, (f, h) in enumerate(zip(model, humans[j], strict=True)):
        if f is None or h is None:
            continue
        others = [humans[k][i] for k in humans if k != j and humans[k][i] is not None]
        if not others:
            continue
        s_f = math.fsum(align(f, o) for o in others) / len(others)
        s_h = math.fsum(align(h, o) for o in others) / len(others)
        tie = abs(s_f - s_h) <= TIE
        wf.append(int(tie or s_f > s_h))
        wh.append(int(tie or s_h > s_f))
    return wf, wh


def _t_test(wf: list[int], wh: list[int], epsilon: float) -> tuple[float | None, float]:
    """``(t, p)`` of the one-sided paired test of ``H0: rho^f <= rho^h - epsilon``."""
    import numpy as np
    from scipy import stats

    d = np.asarray(wf, dtype=float) - np.asarray(wh, dtype=float)
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:  # every difference equal: the test's limit (docstring, step 6)
        return None, 0.0 if mean + epsilon > 0 else 1.0
    t = (mean + epsilon) / (sd / math.sqrt(n))
    return t, float(stats.t.sf(t, n - 1))


def _benjamini_yekutieli(p_values: list[float], q: float) -> tuple[list[float], list[bool]]:
    """Adjusted p-values and rejections of the Benjamini–Yekutieli step-up at ``q``."""
    from statsmodels.stats.multitest import multipletests

    rejected, adjusted, _, _ = multipletests(p_values, alpha=q, method="fdr_by")
    return [float(p) for p in adjusted], [bool(r) for r in rejected]


# ----------------------------------------------------------------------------- table cells


@dataclass(frozen=True)
class Answers:
    """The answers of some columns of a table, decoded, and which alignment they call for."""

    alignment: str
    columns: dict[str, list[Answer | None]]  # column -> one answer (or None) per row
    notes: tuple[str, ...]


_CODES = re.compile(r"^\s*\d+(\s*[,;/ ]\s*\d+)*\s*$")
_INT = re.compile(r"\d{1,6}")


def read_answers(
    table: Table,
    columns: Sequence[str],
    categories: Sequence[str] | None = None,
    codes: Mapping[str, int] | None = None,
) -> Answers:
    """Decode ``columns`` of ``table`` the way ``llmscisci agree`` reads labels, plus names.

    The one place that turns cells into answers (to be replaced by a per-task-kind codec).
    One reading for all the columns together, chosen from what their cells look like:

    - *lists* when any cell is a list (or text in brackets): one-hot lists and human codes
      like ``"1, 3"`` (``codes``, default 1..n) become lists of the size of ``categories``
      or of the first list; alignment ``1-hamming`` when every value is 0 or 1, else
      ``dimension_agreement`` (lists of levels);
    - *single labels* otherwise: category names (case and spacing ignored; one of
      ``categories`` when given) and single codes (the code's category when categories are
      given, else the code itself); alignment ``accuracy``. Several codes in one cell
      (``"1, 3"``) with no list in sight mean multi-label: lists of ``len(categories)``.

    None, NaN, blank text and empty lists are missing answers. A cell that does not decode
    is missing too, counted in a note; a column none of whose cells decode, or with no
    answer at all, is a `UserError` naming it.
    """
    columns = check_columns(table, columns)
    names = list(categories) if categories else None
    cells = {c: table.column(c) for c in columns}
    shapes = {c: Counter(_shape(v) for v in values) for c, values in cells.items()}
    _check_one_kind(shapes)
    multi_codes = any(
        _shape(v) == "codes" and len(re.findall(r"\d+", str(v))) > 1
        for values in cells.values()
        for v in values
    )
    if any(s["list"] for s in shapes.values()) or multi_codes:
        size = len(names) if names else _list_size(cells)
        if size is None:
            raise UserError(
                f"{table.path}: codes like '1, 3' in {', '.join(columns)} but no list to tell "
                "the number of categories; name them (--categories, or --task with --aspect)"
            )

        def decode(v: Any) -> Answer:
            return _decode_list(v, size, codes)

    else:
        lookup = _name_lookup(names, codes)

        def decode(v: Any) -> Answer:
            return _decode_name(v, names, lookup)

    notes: list[str] = []
    out = {c: _decode_column(table, c, decode, notes) for c in columns}
    values = [v for answers in out.values() for v in answers if v is not None]
    if all(isinstance(v, str) for v in values):
        alignment = "accuracy"
    elif all(x in (0, 1) for v in values for x in v):
        alignment = "1-hamming"
    else:
        alignment = "dimension_agreement"
    return Answers(alignment, out, tuple(notes))


def _check_one_kind(shapes: dict[str, Counter[str]]) -> None:
    """Refuse columns of lists beside columns of category names: no one alignment fits both."""
    lists = [c for c, s in shapes.items() if s["list"]]
    texts = [c for c, s in shapes.items() if s["text"] and not s["list"]]
    if lists and texts:
        raise UserError(
            "the columns hold different kinds of answers: "
            f"{', '.join(map(repr, lists))} {'holds' if len(lists) == 1 else 'hold'} lists, "
            f"{', '.join(map(repr, texts))} {'holds' if len(texts) == 1 else 'hold'} "
            "category names; give every column the same kind"
        )


def _shape(value: Any) -> str:
    """``missing``, ``list``, ``codes``, ``text`` or ``other``: how a cell will be read."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, (list, tuple)):
        return "list" if value else "missing"
    if isinstance(value, bool):
        return "other"
    if isinstance(value, int):
        return "codes"
    if not isinstance(value, str):
        return "other"
    text = value.strip()
    if not text:
        return "missing"
    if text.startswith("["):
        return "missing" if re.fullmatch(r"\[\s*\]", text) else "list"
    return "codes" if _CODES.match(text) else "text"


def _list_size(cells: dict[str, list[Any]]) -> int | None:
    """The length of the first cell that reads as a list of ints."""
    for values in cells.values():
        for v in values:
            if _shape(v) == "list":
                try:
                    return len(_int_list(v))
                except LabelError:
                    continue
    return None


def _int_list(value: Any) -> tuple[int, ...]:
    """A list of ints >= 0 from a real list or from text like ``[0, 2, 1]`` (no eval)."""
    if isinstance(value, str):
        body = value.strip()
        if not body.endswith("]"):
            raise LabelError(f"expected a list like '[1, 0, 2]', got {shown(value)}")
        parts = [p.strip() for p in body[1:-1].split(",")]
        if not all(_INT.fullmatch(p) for p in parts):
            raise LabelError(f"expected a list of whole numbers >= 0, got {shown(value)}")
        return tuple(int(p) for p in parts)
    if any(type(v) is not int or v < 0 for v in value):
        raise LabelError(f"expected a list of whole numbers >= 0, got {shown(value)}")
    return tuple(value)


def _decode_list(value: Any, size: int, codes: Mapping[str, int] | None) -> tuple[int, ...]:
    shape = _shape(value)
    if shape == "codes":
        return tuple(decode_label(value, "codes", size, codes))
    if shape != "list":
        raise LabelError(f"expected a list or category codes, got {shown(value)}")
    out = _int_list(value)
    if len(out) != size:
        raise LabelError(f"expected a list of {size} values, got {shown(value)}")
    return out


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _name_lookup(names: list[str] | None, codes: Mapping[str, int] | None) -> dict[str, str]:
    """Normalised name or code -> category name (empty when no categories are given)."""
    if names is None:
        return {}
    lookup = {_key(n): n for n in names}
    index = codes if codes is not None else {str(i + 1): i for i in range(len(names))}
    lookup.update({code: names[i] for code, i in index.items() if 0 <= i < len(names)})
    return lookup


def _decode_name(value: Any, names: list[str] | None, lookup: dict[str, str]) -> str:
    shape = _shape(value)
    if shape not in ("codes", "text"):
        raise LabelError(f"expected a category name or code, got {shown(value)}")
    key = _key(str(value))
    if shape == "codes":
        key = key.lstrip("0") or "0"  # "03" is code 3
    if names is None:
        return key
    if key not in lookup:
        raise LabelError(f"unknown category {shown(value)}; categories: {', '.join(names)}")
    return lookup[key]


def _decode_column(
    table: Table, column: str, decode: Callable[[Any], Answer], notes: list[str]
) -> list[Answer | None]:
    out: list[Answer | None] = []
    bad, first_bad = 0, ""
    for i, value in enumerate(table.column(column)):
        if _shape(value) == "missing":
            out.append(None)
            continue
        try:
            out.append(decode(value))
        except LabelError as exc:
            out.append(None)
            bad += 1
            first_bad = first_bad or f"{table.where(i)}: {exc}"
    given = sum(v is not None for v in out)
    if not given:
        if bad:
            raise UserError(f"none of the {bad} labels in column {column!r} decode; {first_bad}")
        raise UserError(f"{table.path}: column {column!r} holds no label")
    if bad:
        notes.append(
            f"column {column!r}: {bad} invalid labels left out as missing; first: {first_bad}"
        )
    return out


#: The alignment of each answer kind (values read with the task's codecs).
KIND_ALIGNMENT = {"single": "accuracy", "multi": "1-hamming", "dimensions": "dimension_agreement"}


def alt_test_kind(
    kind: str,
    model: str,
    columns: Mapping[str, Sequence[Any]],
    humans: Sequence[str],
    epsilon: float = DEFAULT_EPSILON,
    q: float = DEFAULT_Q,
    notes: Sequence[str] = (),
) -> AltTest:
    """The alt-test of column ``model`` against ``humans``, their cells already decoded by the
    task's answer kind (``columns``: name -> values of the kind, None where missing or
    invalid); the alignment follows the kind (`KIND_ALIGNMENT`)."""
    humans = list(humans)
    if model in humans:
        raise UserError(f"the model column {model!r} is also listed among the human columns")
    _require_humans(humans)

    def answer(v: Any) -> Any:
        return None if v is None else (v if isinstance(v, int) else tuple(v))

    cols = {c: [answer(v) for v in columns[c]] for c in [model, *humans]}
    return alt_test(
        cols[model],
        {h: cols[h] for h in humans},
        KIND_ALIGNMENT[kind],
        epsilon,
        q,
        model_name=model,
        notes=notes,
    )


def alt_test_table(
    table: Table,
    model: str,
    humans: Sequence[str],
    categories: Sequence[str] | None = None,
    codes: Mapping[str, int] | None = None,
    epsilon: float = DEFAULT_EPSILON,
    q: float = DEFAULT_Q,
) -> AltTest:
    """The alt-test of column ``model`` against the human columns of ``table``."""
    humans = list(humans)
    if model in humans:
        raise UserError(f"the model column {model!r} is also listed among the human columns")
    check_columns(table, [model, *humans])  # a misspelt column is named first
    _require_humans(humans)
    answers = read_answers(table, [model, *humans], categories, codes)
    cols = answers.columns
    return alt_test(
        cols[model],
        {h: cols[h] for h in humans},
        answers.alignment,
        epsilon,
        q,
        model_name=model,
        notes=answers.notes,
    )
