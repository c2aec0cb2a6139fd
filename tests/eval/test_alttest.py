"""The alt-test (Calderon, Reichart and Dror, ACL 2025): a hand-worked case, a random case
checked against scipy's t-test and a hand Benjamini–Yekutieli, pass and fail, ties and zero
variance, missing answers, the alignments, the table reader, and ``agree --alt-test``."""

from __future__ import annotations

import doctest
import json
import math
import random
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from sklearn.metrics import hamming_loss

from llmscisci_cfg.cli.agree import register
from llmscisci_cfg.cli.common import UserErrorGroup
from llmscisci_cfg.data.table import Table, read_table, write_table
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.eval import alttest as alttest_module
from llmscisci_cfg.eval.alttest import (
    accuracy,
    alt_test,
    dimension_agreement,
    one_minus_hamming,
    read_answers,
)

REPO = Path(__file__).resolve().parents[2]


def table_of(rows: list[dict]) -> Table:
    return Table(Path("t.jsonl"), list(rows[0]), rows)


def hand_by(p_values: list[float], q: float) -> tuple[list[float], list[bool]]:
    """Benjamini–Yekutieli by its definition: reject the k smallest p-values, k the largest i
    with p_(i) <= i q / (m H_m); adjusted p_(i) = min over l >= i of p_(l) m H_m / l, capped at 1."""
    m = len(p_values)
    harmonic = sum(1 / i for i in range(1, m + 1))
    order = sorted(range(m), key=lambda i: p_values[i])
    k = max(
        (r + 1 for r, i in enumerate(order) if p_values[i] <= (r + 1) * q / (m * harmonic)),
        default=0,
    )
    rejected = [False] * m
    for i in order[:k]:
        rejected[i] = True
    adjusted = [0.0] * m
    running = 1.0
    for r in range(m - 1, -1, -1):
        running = min(running, p_values[order[r]] * m * harmonic / (r + 1))
        adjusted[order[r]] = running
    return adjusted, rejected


def test_module_doctest():
    assert doctest.testmod(alttest_module).failed == 0


# ----------------------------------------------------------------------------- worked by hand

#           item:  1    2    3    4    5    6
HAND_MODEL = ["a", "a", "b", "a", "b", "a"]
HAND_HUMANS = {
    "x": ["a", "b", "a", "a", "b", "a"],
    "y": ["a", "a", "b", "b", "a", "a"],
    "z": ["a", "a", "b", "b", "a", "b"],
}


def test_hand_worked_example():
    """Accuracy alignment, epsilon 0.2, every item counted (min_items lowered to 2).

    Leave out x (others y, z), S(model) vs S(x) per item: 1: 1 vs 1 tie; 2: 1 vs 0; 3: 1 vs 0;
    4: 0 vs 0 tie; 5: 0 vs 0 tie; 6: .5 vs .5 tie. W^f = 1 1 1 1 1 1, W^h = 1 0 0 1 1 1,
    d = W^f - W^h = 0 1 1 0 0 0: mean 1/3, sd sqrt(4/15), t = (1/3 + 1/5) / sqrt(4/90) = 0.8 sqrt(10).
    Leave out y (others x, z): every item is a tie (1 vs 1, then .5 vs .5 five times): d = 0,
    zero variance, mean + epsilon > 0 so p = 0 and t is undefined.
    Leave out z (others x, y): items 1-5 tie, item 6: 1 vs 0. d = 0 0 0 0 0 1: mean 1/6,
    sd sqrt(1/6), t = (1/6 + 1/5) * 6 = 2.2.
    """
    result = alt_test(HAND_MODEL, HAND_HUMANS, "accuracy", epsilon=0.2, min_items=2)
    x, y, z = result.annotators
    assert [a.annotator for a in result.annotators] == ["x", "y", "z"]
    assert (x.n, y.n, z.n) == (6, 6, 6)
    assert (x.model_advantage, x.annotator_advantage) == (1.0, pytest.approx(4 / 6))
    assert (y.model_advantage, y.annotator_advantage) == (1.0, 1.0)
    assert (z.model_advantage, z.annotator_advantage) == (1.0, pytest.approx(5 / 6))
    assert x.t == pytest.approx(0.8 * math.sqrt(10))
    assert z.t == pytest.approx(2.2)
    assert y.t is None and y.p_value == 0.0
    assert result.notes == (
        "annotator 'y': the model-minus-annotator difference is the same on every item (zero "
        "variance), so t is undefined; p = 0 by the test's limit",
    )
    p_x, p_z = stats.t.sf(0.8 * math.sqrt(10), 5), stats.t.sf(2.2, 5)
    assert (round(p_x, 4), round(p_z, 4)) == (0.0263, 0.0395)  # both below 0.05 alone
    assert x.p_value == pytest.approx(p_x) and z.p_value == pytest.approx(p_z)
    # BY, m = 3, H_3 = 11/6: thresholds i q / (m H_3) = 0.00909, 0.01818, 0.02727 for the
    # sorted p-values 0, p_x, p_z: only the first passes its threshold
    harmonic = Fraction(11, 6)
    assert p_x > 2 * 0.05 / (3 * harmonic) and p_z > 3 * 0.05 / (3 * harmonic)
    assert y.p_adjusted == 0.0
    assert z.p_adjusted == pytest.approx(p_z * 3 * 11 / 6 / 3)
    assert x.p_adjusted == pytest.approx(min(p_x * 3 * 11 / 6 / 2, p_z * 11 / 6))
    assert (x.rejected, y.rejected, z.rejected) == (False, True, False)
    assert result.winning_rate == pytest.approx(1 / 3) and result.passed is False
    assert result.average_advantage_probability == 1.0
    assert result.won == 1 and result.tested == 3


def test_margin_zero_leaves_an_all_tie_annotator_unbeaten():
    """Zero variance on the margin (mean d + epsilon = 0) is no evidence against H0: p = 1."""
    result = alt_test(HAND_MODEL, HAND_HUMANS, "accuracy", epsilon=0.0, min_items=2)
    y = result.annotators[1]
    assert (y.t, y.p_value, y.rejected) == (None, 1.0, False)
    assert result.winning_rate == 0.0


def test_zero_variance_limits_are_defined_and_match_scipy_where_it_defines_them():
    t_test = alttest_module._t_test
    assert t_test([1, 1, 1], [1, 1, 1], 0.2) == (None, 0.0)  # all ties, margin > 0
    assert t_test([1, 1, 1], [1, 1, 1], 0.0) == (None, 1.0)  # all ties, on the margin
    assert t_test([0, 0, 0], [1, 1, 1], 0.2) == (None, 1.0)  # annotator always strictly closer
    assert t_test([1, 1, 1], [0, 0, 0], 0.2) == (None, 0.0)  # model always strictly closer
    # scipy's limits for the same data (d' = W^h - W^f against epsilon, lower tail)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "catastrophic cancellation"
        assert stats.ttest_1samp([0, 0, 0], 0.2, alternative="less").pvalue == 0.0
        assert stats.ttest_1samp([1, 1, 1], 0.2, alternative="less").pvalue == 1.0
        assert stats.ttest_1samp([-1, -1, -1], 0.2, alternative="less").pvalue == 0.0


def test_identical_labels_everywhere_pass_with_margin():
    same = ["a", "b", "c", "a"] * 10
    result = alt_test(same, {h: list(same) for h in "pqr"}, "accuracy", epsilon=0.1)
    assert [
        (a.model_advantage, a.annotator_advantage, a.t, a.p_value) for a in result.annotators
    ] == [(1.0, 1.0, None, 0.0)] * 3
    assert result.winning_rate == 1.0 and result.passed
    assert json.loads(json.dumps(result.as_json(), allow_nan=False))["annotators"][0]["t"] is None


def test_scores_a_hair_apart_are_a_tie():
    """Means of equal alignments may differ in the last bit; within 1e-9 both indicators are 1."""
    model, humans = [0] * 3, {"h": [1] * 3, "o1": [2] * 3, "o2": [2] * 3}

    def near(a, b):
        return 0.5 + (1e-12 if a == 0 else 0.0)

    def apart(a, b):
        return 0.5 + (1e-6 if a == 0 else 0.0)

    tie = alt_test(model, humans, near, epsilon=0.2, min_items=2).annotators[0]
    assert (tie.model_advantage, tie.annotator_advantage) == (1.0, 1.0)
    won = alt_test(model, humans, apart, epsilon=0.2, min_items=2)
    assert (won.annotators[0].model_advantage, won.annotators[0].annotator_advantage) == (1.0, 0.0)
    assert won.alignment == "apart"


# ----------------------------------------------------------------------------- missing answers


def test_items_counted_per_annotator_with_missing_answers():
    model = ["a", None, "a", "b", "a", "b"]
    humans = {
        "x": ["a", "a", "b", None, "a", "b"],
        "y": ["a", "b", None, None, None, "b"],
        "z": [None, "b", "b", "a", None, "a"],
    }
    # x: items 1, 3, 6 (2 has no model answer; 4 x missing; 5 no other human)
    # y: items 1, 6 (2 no model; 3-5 y missing); z: items 3, 6 (1, 5 z missing; 2 no model;
    # 4 no other human)
    result = alt_test(model, humans, "accuracy", epsilon=0.2, min_items=2)
    assert [a.n for a in result.annotators] == [3, 2, 2]
    x = result.annotators[0]
    # item 1: others {y: a}: 1 vs 1 tie; 3: {z: b}: 0 vs 1; 6: {y: b, z: a}: .5 vs .5 tie
    assert (x.model_advantage, x.annotator_advantage) == (pytest.approx(2 / 3), 1.0)


def test_too_few_items_skips_the_annotator_with_a_note():
    rng = random.Random(3)
    truth = [rng.choice("abc") for _ in range(40)]
    humans = {h: list(truth) for h in ("p", "q", "r")}
    humans["s"] = truth[:20] + [None] * 20
    result = alt_test(truth, humans, "accuracy")
    s = result.annotators[3]
    assert (s.n, s.tested, s.p_value, s.rejected) == (20, False, None, None)
    assert s.model_advantage == 1.0  # still reported
    assert result.tested == 3 and result.winning_rate == 1.0
    assert any("'s' was not tested: 20 items < 30" in note for note in result.notes)
    assert "1 more not tested: fewer than 30 items" in result.sentence()


def test_no_annotator_with_enough_items_is_refused():
    with pytest.raises(UserError, match=r"at least 30 items per annotator.*items: x 6, y 6, z 6"):
        alt_test(HAND_MODEL, HAND_HUMANS, "accuracy")


@pytest.mark.parametrize("names", [["x", "y"], ["x"]])
def test_fewer_than_three_humans_is_refused(names):
    humans = {h: HAND_HUMANS[h] for h in names}
    with pytest.raises(UserError, match="at least 3 human annotators, got"):
        alt_test(HAND_MODEL, humans, "accuracy", min_items=2)


@pytest.mark.parametrize(("epsilon", "q"), [(-0.1, 0.05), (1.0, 0.05), (0.2, 0.0), (0.2, 1.5)])
def test_parameters_out_of_range_are_refused(epsilon, q):
    with pytest.raises(UserError, match="must be in"):
        alt_test(HAND_MODEL, HAND_HUMANS, "accuracy", epsilon, q, min_items=2)


def test_unknown_alignment_lists_the_known_ones():
    with pytest.raises(UserError, match="known: accuracy, 1-hamming, dimension_agreement"):
        alt_test(HAND_MODEL, HAND_HUMANS, "kappa", min_items=2)


# ----------------------------------------------------------------------------- a random case


def simulate(n: int, humans: int, noise: float, model_noise: float, seed: int, missing=0.0):
    """Answers in 3 categories: each annotator keeps the truth with probability 1 - noise."""
    rng = random.Random(seed)
    truth = [rng.choice("abc") for _ in range(n)]

    def noisy(p: float) -> list:
        return [t if rng.random() >= p else rng.choice("abc") for t in truth]

    model = noisy(model_noise)
    people = {f"h{k}": noisy(noise) for k in range(humans)}
    for answers in people.values():
        for i in range(n):
            if rng.random() < missing:
                answers[i] = None
    return model, people


def independent(model, humans, epsilon, q):
    """The alt-test written out plainly, with exact fractions and scipy's own t-test."""
    p_values, rho_f, rho_h = {}, {}, {}
    for j in humans:
        wf, wh = [], []
        for i, f in enumerate(model):
            h = humans[j][i]
            others = [humans[k][i] for k in humans if k != j and humans[k][i] is not None]
            if f is None or h is None or not others:
                continue
            s_f = Fraction(sum(f == o for o in others), len(others))
            s_h = Fraction(sum(h == o for o in others), len(others))
            wf.append(int(s_f >= s_h))
            wh.append(int(s_h >= s_f))
        d = np.array(wh) - np.array(wf)  # the authors' orientation: human minus model
        test = stats.ttest_1samp(d, epsilon, alternative="less")
        p_values[j] = (float(test.pvalue), -float(test.statistic), len(d))
        rho_f[j], rho_h[j] = np.mean(wf), np.mean(wh)
    adjusted, rejected = hand_by([p for p, _, _ in p_values.values()], q)
    return p_values, rho_f, rho_h, adjusted, rejected


@pytest.mark.parametrize(
    ("model_noise", "epsilon", "seed"),
    [(0.1, 0.2, 11), (0.2, 0.1, 11), (0.4, 0.1, 11), (0.3, 0.1, 13)],
)
def test_random_case_matches_scipy_and_hand_by(model_noise, epsilon, seed):
    model, humans = simulate(90, 5, 0.35, model_noise, seed=seed, missing=0.15)
    result = alt_test(model, humans, "accuracy", epsilon=epsilon)
    p_values, rho_f, rho_h, adjusted, rejected = independent(model, humans, epsilon, 0.05)
    for k, a in enumerate(result.annotators):
        p, t, n = p_values[a.annotator]
        assert a.n == n and n >= 30
        assert a.p_value == pytest.approx(p, rel=1e-9, abs=1e-15)
        assert a.t == pytest.approx(t)
        assert a.model_advantage == pytest.approx(rho_f[a.annotator])
        assert a.annotator_advantage == pytest.approx(rho_h[a.annotator])
        assert a.p_adjusted == pytest.approx(adjusted[k], rel=1e-9, abs=1e-15)
        assert a.rejected is rejected[k]
    assert result.winning_rate == sum(rejected) / 5
    assert result.average_advantage_probability == pytest.approx(np.mean(list(rho_f.values())))
    assert result.passed is (sum(rejected) / 5 >= 0.5)


def test_the_random_cases_cover_a_mixed_decision_where_the_correction_matters():
    """One of the cases above wins 2 of 5, and BY turns away p-values below 0.05 alone."""
    model, humans = simulate(90, 5, 0.35, 0.2, seed=11, missing=0.15)
    result = alt_test(model, humans, "accuracy", epsilon=0.1)
    assert result.won == 2 and result.winning_rate == 0.4 and not result.passed
    assert any(a.p_value < 0.05 and not a.rejected for a in result.annotators)


def test_a_good_model_passes_and_a_random_one_fails():
    good, humans = simulate(100, 4, 0.3, 0.0, seed=5)
    passed = alt_test(good, humans, "accuracy", epsilon=0.2)
    assert passed.passed and passed.winning_rate == 1.0
    assert passed.average_advantage_probability > 0.9
    assert "may replace a human coder's" in passed.sentence()
    assert "won against 4 of 4 annotators, ω = 1.00 ≥ 0.5" in passed.sentence()
    rng = random.Random(9)
    noise = [rng.choice("abc") for _ in good]
    failed = alt_test(noise, humans, "accuracy", epsilon=0.2)
    assert not failed.passed and failed.winning_rate == 0.0
    assert failed.average_advantage_probability < 0.6
    assert "may not replace" in failed.sentence() and "ω = 0.00 < 0.5" in failed.sentence()


def test_winning_half_the_annotators_passes():
    """omega = 0.5 passes (>=). On every item r and s say A, p says B, q says C, the model A.

    Leave out p (others C, A, A): model 2/3 vs p 0, strictly closer: d = +1 everywhere, p = 0.
    The same for q. Leave out r (others B, C, A): model 1/3 vs r 1/3, a tie everywhere: with
    epsilon 0 that sits on the margin, p = 1. The same for s.
    """
    rng = random.Random(2)
    items = [rng.sample("abc", 3) for _ in range(40)]
    model = [a for a, _, _ in items]
    humans = {
        "p": [b for _, b, _ in items],
        "q": [c for _, _, c in items],
        "r": model,
        "s": list(model),
    }
    result = alt_test(model, humans, "accuracy", epsilon=0.0)
    assert [a.p_value for a in result.annotators] == [0.0, 0.0, 1.0, 1.0]
    assert [a.rejected for a in result.annotators] == [True, True, False, False]
    assert result.winning_rate == 0.5 and result.passed
    assert "won against 2 of 4 annotators, ω = 0.50 ≥ 0.5" in result.sentence()


# ----------------------------------------------------------------------------- alignments


def test_accuracy():
    assert accuracy("Method", "Method") == 1.0 and accuracy("Method", "Result") == 0.0
    assert accuracy((1, 0), (1, 0)) == 1.0


@pytest.mark.parametrize(
    ("a", "b"), [([1, 0, 1, 0, 0], [1, 1, 0, 0, 0]), ([0, 0, 0], [1, 1, 1]), ([1], [1])]
)
def test_one_minus_hamming_matches_scikit_learn(a, b):
    assert one_minus_hamming(a, b) == pytest.approx(1 - hamming_loss([a], [b]))


def test_one_minus_hamming_refuses_levels_and_unequal_lengths():
    with pytest.raises(ValueError, match="0/1 lists"):
        one_minus_hamming([2, 0], [1, 0])
    with pytest.raises(ValueError, match="different or zero length"):
        one_minus_hamming([1, 0], [1, 0, 0])


def test_dimension_agreement_counts_absent_as_a_level():
    # dimensions: absent/absent agree, high(3)/high(3) agree, low(1)/medium(2) and
    # absent(0)/low(1) do not: 2 of 4
    assert dimension_agreement([0, 3, 1, 0], [0, 3, 2, 1]) == 0.5
    assert dimension_agreement((2, 2), (2, 2)) == 1.0
    with pytest.raises(ValueError):
        dimension_agreement([], [])


def test_multi_label_and_dimension_alignment_in_the_test():
    """1-hamming per item, averaged over the other annotators, by hand on one item."""
    model = [(1, 0, 1)] * 2
    humans = {"x": [(1, 0, 0)] * 2, "y": [(1, 1, 1)] * 2, "z": [(0, 0, 1)] * 2}
    result = alt_test(model, humans, "1-hamming", min_items=2)
    x = result.annotators[0]
    # leave out x: model vs y 2/3, vs z 2/3 -> 2/3; x vs y 1/3, vs z 1/3 -> 1/3: model closer
    assert (x.model_advantage, x.annotator_advantage) == (1.0, 0.0)
    levels = {"x": [(0, 2)] * 2, "y": [(0, 3)] * 2, "z": [(1, 3)] * 2}
    dims = alt_test([(0, 3)] * 2, levels, "dimension_agreement", min_items=2)
    # leave out y: model (0, 3) vs x 1/2, vs z 1/2 -> 1/2; y (0, 3) the same: a tie
    assert (dims.annotators[1].model_advantage, dims.annotators[1].annotator_advantage) == (1, 1)
    assert dims.alignment == "dimension_agreement"


# ----------------------------------------------------------------------------- reading tables


def test_read_one_hot_lists_and_codes():
    rows = [
        {"m": "[1, 0, 1]", "h1": "1, 3", "h2": [1, 0, 0], "h3": None},
        {"m": [0, 1, 0], "h1": 2, "h2": "[0, 1, 1]", "h3": ""},
    ]
    answers = read_answers(table_of(rows), ["m", "h1", "h2", "h3"][:3])
    assert answers.alignment == "1-hamming"
    assert answers.columns == {
        "m": [(1, 0, 1), (0, 1, 0)],
        "h1": [(1, 0, 1), (0, 1, 0)],
        "h2": [(1, 0, 0), (0, 1, 1)],
    }


def test_read_category_names_case_and_space_insensitive():
    rows = [
        {"m": "Background", "h1": " background ", "h2": "1"},
        {"m": "uses  method", "h1": "Uses Method", "h2": "3"},
    ]
    names = ["Background", "Uses method", "Result"]
    answers = read_answers(table_of(rows), ["m", "h1", "h2"], names)
    assert answers.alignment == "accuracy"
    assert answers.columns == {
        "m": ["Background", "Uses method"],
        "h1": ["Background", "Uses method"],
        "h2": ["Background", "Result"],  # codes 1..n name the categories in order
    }
    bare = read_answers(table_of(rows), ["m", "h1"])  # no categories: the names themselves
    assert bare.columns["m"] == ["background", "uses method"] == bare.columns["h1"]


def test_read_dimension_levels():
    rows = [{"m": "[0, 2, 3]", "h1": [0, 2, 1], "h2": "[1, 0, 0]"}]
    answers = read_answers(table_of(rows), ["m", "h1", "h2"])
    assert answers.alignment == "dimension_agreement"
    assert answers.columns["m"] == [(0, 2, 3)]


def test_read_invalid_cells_are_missing_with_a_note():
    rows = [
        {"m": "a", "h1": "a", "h2": "zzz"},
        {"m": "b", "h1": "b", "h2": "b"},
        {"m": "a", "h1": True, "h2": "a"},
    ]
    answers = read_answers(table_of(rows), ["m", "h1", "h2"], ["a", "b"])
    assert answers.columns["h2"] == [None, "b", "a"]
    assert answers.columns["h1"] == ["a", "b", None]
    assert any(
        "column 'h2': 1 invalid labels" in n and "unknown category 'zzz'" in n
        for n in answers.notes
    )


def test_read_refuses_a_column_with_no_label_that_decodes():
    rows = [
        {"m": "[1, 0]", "h1": "[1, 0]", "h2": "[yes, no]"},
        {"m": "[0, 1]", "h1": "2", "h2": "[1, -1]"},
    ]
    with pytest.raises(
        UserError,
        match=r"none of the 2 labels in column 'h2' decode; t.jsonl: row 1: expected a list of "
        r"whole numbers >= 0, got '\[yes, no\]'",
    ):
        read_answers(table_of(rows), ["m", "h1", "h2"])
    mixed = [{"m": "[1, 0]", "h1": "[1, 0]", "h2": "yes"}]
    with pytest.raises(UserError, match="'m', 'h1' hold lists, 'h2' holds category names"):
        read_answers(table_of(mixed), ["m", "h1", "h2"])
    empty = [{"m": "a", "h1": "a", "h2": ""}, {"m": "b", "h1": "b", "h2": None}]
    with pytest.raises(UserError, match="column 'h2' holds no label"):
        read_answers(table_of(empty), ["m", "h1", "h2"])


def test_read_several_codes_need_the_categories():
    rows = [{"m": "1, 3", "h1": "2", "h2": "1"}]
    with pytest.raises(UserError, match="number of categories"):
        read_answers(table_of(rows), ["m", "h1", "h2"])
    answers = read_answers(table_of(rows), ["m", "h1", "h2"], ["x", "y", "z"])
    assert answers.alignment == "1-hamming"
    assert answers.columns["m"] == [(1, 0, 1)] and answers.columns["h1"] == [(0, 1, 0)]


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def invoke():
    """``agree`` on a fresh group that, like ``llmscisci``, turns UserError into exit 2."""
    group = UserErrorGroup()
    register(group)
    runner = CliRunner()
    return lambda *args: runner.invoke(group, ["agree", *map(str, args)])


def write_labels(path: Path, model, humans: dict, encode=lambda v: v) -> Path:
    rows = [
        {"id": i, "model": encode(model[i]), **{h: encode(a[i]) for h, a in humans.items()}}
        for i in range(len(model))
    ]
    return write_table(path, rows)


@pytest.fixture
def labels_csv(tmp_path) -> Path:
    """60 items, 4 coders (30% noise, 3 categories, some cells blank), a near-perfect model."""
    model, humans = simulate(60, 4, 0.3, 0.05, seed=7, missing=0.05)
    return write_labels(tmp_path / "labels.csv", model, humans, lambda v: v or "")


def test_cli_json_shape_and_values(invoke, labels_csv):
    result = invoke(
        labels_csv, "--alt-test", "model", "--columns", "h0", "h1", "h2", "h3", "--json"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {
        "test", "model", "alignment", "epsilon", "q", "min_items", "winning_rate",
        "average_advantage_probability", "passed", "won", "tested", "annotators",
    }  # fmt: skip
    assert (out["alignment"], out["epsilon"], out["q"], out["model"]) == (
        "accuracy",
        0.2,
        0.05,
        "model",
    )
    assert [a["annotator"] for a in out["annotators"]] == ["h0", "h1", "h2", "h3"]
    assert set(out["annotators"][0]) == {
        "annotator", "n", "tested", "model_advantage", "annotator_advantage", "t", "p_value",
        "p_adjusted", "rejected",
    }  # fmt: skip
    # the same numbers as the function on the same answers
    table = read_answers(read_table(labels_csv), ["model", "h0", "h1", "h2", "h3"]).columns
    direct = alt_test(table["model"], {h: table[h] for h in ("h0", "h1", "h2", "h3")})
    assert out["winning_rate"] == direct.winning_rate == 1.0 and out["passed"] is True
    assert out["average_advantage_probability"] == direct.average_advantage_probability
    assert [a["p_value"] for a in out["annotators"]] == [a.p_value for a in direct.annotators]
    assert all(a["rejected"] is True and a["n"] >= 50 for a in out["annotators"])


def test_cli_text_gives_the_table_and_the_sentence(invoke, labels_csv):
    result = invoke(labels_csv, "--alt-test", "model", "h0", "h1", "h2", "h3", "--epsilon", "0.15")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "alignment accuracy, ε = 0.15" in text
    assert "winning rate ω = 1.00 (4 of 4 tested)" in text
    assert "average advantage probability ρ = " in text
    assert (
        "The model's labels (model) may replace a human coder's (alt-test of Calderon, Reichart "
        "and Dror 2025, ε = 0.15, q = 0.05: it won against 4 of 4 annotators, ω = 1.00 ≥ 0.5"
    ) in text
    for h in ("h0", "h1", "h2", "h3"):
        assert any(
            line.strip().startswith(h) and line.endswith("yes") for line in text.splitlines()
        )


def test_cli_failing_model_and_dimension_answers(invoke, tmp_path):
    rng = random.Random(4)
    truth = [tuple(rng.randint(0, 3) for _ in range(4)) for _ in range(50)]

    def noisy(p):
        return [tuple(v if rng.random() >= p else rng.randint(0, 3) for v in t) for t in truth]

    humans = {f"c{k}": noisy(0.2) for k in range(3)}
    model = [tuple(rng.randint(0, 3) for _ in range(4)) for _ in truth]  # unrelated to truth
    path = write_labels(tmp_path / "dims.jsonl", model, humans, list)
    result = invoke(path, "--alt-test", "model", "c0", "c1", "c2", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["alignment"] == "dimension_agreement"
    assert out["passed"] is False and out["winning_rate"] == 0.0
    text = invoke(path, "--alt-test", "model", "c0", "c1", "c2").output
    assert "The model's labels (model) may not replace a human coder's" in text
    assert "ω = 0.00 < 0.5" in text


def test_cli_one_hot_with_task_codes(invoke, tmp_path):
    """Human codes and one-hot lists of the reproducibility task, as `agree` reads them."""
    rng = random.Random(8)
    truth = [[int(rng.random() < 0.4) for _ in range(5)] for _ in range(40)]

    def codes(label):
        return ", ".join(str(k + 1) for k, v in enumerate(label) if v) or "5"

    rows = [{"model": str(t), "a": codes(t), "b": list(t), "c": str(t)} for t in truth]
    path = write_table(tmp_path / "repro.jsonl", rows)
    result = invoke(
        path,
        "--alt-test",
        "model",
        "a",
        "b",
        "c",
        "--task",
        "builtin:repro_effort",
        "--aspect",
        "easy",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["alignment"] == "1-hamming"
    assert [a["n"] for a in out["annotators"]] == [40, 40, 40]


def test_cli_notes_go_to_stderr_with_json(invoke, tmp_path):
    model, humans = simulate(40, 3, 0.2, 0.0, seed=1)
    humans["late"] = model[:10] + [None] * 30
    path = write_labels(tmp_path / "t.jsonl", model, humans)
    result = invoke(path, "--alt-test", "model", "h0", "h1", "h2", "late", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["annotators"][3]["tested"] is False and out["tested"] == 3
    assert "note: annotator 'late' was not tested: 10 items < 30" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--alt-test", "model", "h0", "h1"], "at least 3 human annotators, got 2 (h0, h1)"),
        (["--alt-test", "modle", "h0", "h1", "h2"], "no column 'modle' (did you mean 'model'?)"),
        (["--alt-test", "model", "h0", "h1", "h9"], "no column 'h9'"),
        (["--alt-test", "model", "model", "h1", "h2"], "also listed among the human columns"),
        (["--alt-test", "model", "h0", "h1", "h2", "--epsilon", "1.5"], "epsilon must be in"),
        (["h0", "h1", "--epsilon", "0.1"], "--epsilon needs --alt-test"),
        (["--alt-test", "model", "h0", "h1", "junk"], "none of the 60 labels in column 'junk'"),
        (["--alt-test", "model", "h0", "h1", "lists"], "'lists' holds lists, 'model', 'h0'"),
        (
            ["--alt-test", "model", "h0", "h1", "h2", "--categories", "x,y,z"],
            "unknown category",
        ),
    ],
)
def test_cli_mistakes_exit_2_without_traceback(invoke, tmp_path, args, expected):
    model, humans = simulate(60, 3, 0.3, 0.1, seed=2)
    humans["lists"] = [[1, 0]] * 60  # lists among category names
    humans["junk"] = [{"happiness": "high"}] * 60  # no answer kind we read
    path = write_labels(tmp_path / "t.jsonl", model, humans)
    if "lists" not in args and "junk" not in args:
        path = write_labels(tmp_path / "u.jsonl", model, {h: humans[h] for h in ("h0", "h1", "h2")})
    result = invoke(path, *args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_cli_too_few_items_exit_2(invoke, tmp_path):
    model, humans = simulate(12, 3, 0.3, 0.1, seed=2)
    result = invoke(
        write_labels(tmp_path / "t.jsonl", model, humans), "--alt-test", "model", "h0", "h1", "h2"
    )
    assert result.exit_code == 2
    assert "at least 30 items per annotator" in result.output and "h0 12" in result.output
    assert "Traceback" not in result.output


def test_cli_help_names_the_alt_test():
    group = click.Group()
    register(group)
    result = CliRunner().invoke(group, ["agree", "--help"])
    assert result.exit_code == 0
    assert "--alt-test" in result.output and "--epsilon" in result.output
    assert "Calderon" in result.output


def test_imports_no_statistics_library():
    probe = (
        "import sys, llmscisci_cfg.eval.alttest\n"
        "print([m for m in ('torch', 'transformers', 'numpy', 'scipy', 'statsmodels', 'sklearn')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
