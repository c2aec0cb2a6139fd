"""Eval metrics against hand-computed tables (llmscisci_cfg.eval.metrics)."""

from __future__ import annotations

from fractions import Fraction as F

import pytest

from llmscisci_cfg.eval.metrics import (
    Scored,
    aspect_metrics,
    category_score,
    effective_prediction,
    model_report,
    report,
)
from llmscisci_cfg.task.answer import parse_completion

CATS = ["a", "b", "c"]


def _approx(m, expected: dict) -> None:
    for key, value in expected.items():
        assert getattr(m, key) == pytest.approx(float(value), abs=1e-12), key


def test_mixed_table_with_invalid_prediction_and_category_absent_from_gold():
    # gold / predicted, hand-scored; row 3 is invalid -> complement [1, 0, 1]; 'c' never in gold.
    rows = [
        Scored("easy", [1, 0, 0], [1, 0, 0], True),  # exact
        Scored("easy", [1, 1, 0], [1, 0, 0], True),  # FN b
        Scored("easy", [0, 1, 0], None, False),  # FP a, FN b, FP c; Hamming 1
        Scored("easy", [1, 0, 0], [0, 0, 1], False),  # FN a, FP c
    ]
    m = aspect_metrics(rows, CATS)
    a, b, c = (m.per_category[k] for k in CATS)
    assert (a.tp, a.fp, a.fn, a.support) == (2, 1, 1, 3)
    assert (b.tp, b.fp, b.fn, b.support) == (0, 0, 2, 2)
    assert (c.tp, c.fp, c.fn, c.support) == (0, 2, 0, 0)
    _approx(a, {"precision": F(2, 3), "recall": F(2, 3), "f1": F(2, 3)})
    _approx(b, {"precision": 0, "recall": 0, "f1": 0})  # never predicted, present in gold
    _approx(c, {"precision": 0, "recall": 0, "f1": 0})  # predicted, never in gold
    _approx(
        m,
        {
            "n": 4,
            "n_labelled": 4,
            "format_valid_rate": F(1, 2),
            "label_valid_rate": F(3, 4),
            "hamming_loss": F(0 + 1 + 3 + 2, 4 * 3),
            "exact_match": F(1, 4),
            "micro_precision": F(2, 5),
            "micro_recall": F(2, 5),
            "micro_f1": F(2, 5),
            "macro_f1": F(2, 9),
        },
    )
    assert m.mean_reward is None and m.mean_rewards == {}


def test_category_never_in_gold_and_never_predicted_is_perfect():
    rows = [Scored("easy", [1, 0, 0], [1, 0, 0], True), Scored("easy", [0, 1, 0], [0, 1, 0], True)]
    m = aspect_metrics(rows, CATS)
    c = m.per_category["c"]
    assert (c.precision, c.recall, c.f1, c.support) == (1.0, 1.0, 1.0, 0)
    assert (m.micro_f1, m.macro_f1, m.hamming_loss, m.exact_match) == (1.0, 1.0, 0.0, 1.0)


def test_all_invalid_predictions_are_wrong_everywhere():
    rows = [Scored("easy", [1, 0, 0], None, False), Scored("easy", [0, 1, 0], None, True)]
    m = aspect_metrics(rows, CATS)
    assert (m.format_valid_rate, m.label_valid_rate) == (0.5, 0.0)
    assert (m.hamming_loss, m.exact_match, m.micro_f1, m.macro_f1) == (1.0, 0.0, 0.0, 0.0)
    counts = {k: (s.tp, s.fp, s.fn) for k, s in m.per_category.items()}
    # 'c' is never in gold, but the invalid rows' complements predict it: FP, not a free 1.0
    assert counts == {"a": (0, 1, 1), "b": (0, 1, 1), "c": (0, 2, 0)}
    assert m.micro_precision == 0.0 and m.micro_recall == 0.0


def test_wrong_length_prediction_counts_as_invalid():
    assert effective_prediction([1, 0, 1], [1, 0]) == [0, 1, 0]
    assert effective_prediction([1, 0, 1], None) == [0, 1, 0]
    assert effective_prediction([1, 0, 1], [1, 1, 1]) == [1, 1, 1]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((0, 0, 0), (1.0, 1.0, 1.0)),
        ((0, 0, 4), (0.0, 0.0, 0.0)),
        ((0, 4, 0), (0.0, 0.0, 0.0)),
        ((3, 1, 0), (0.75, 1.0, 6 / 7)),
        ((1, 1, 3), (0.5, 0.25, 1 / 3)),
    ],
)
def test_category_score_conventions(counts, expected):
    s = category_score(*counts)
    assert (s.precision, s.recall, s.f1) == pytest.approx(expected)
    if s.precision + s.recall:
        assert s.f1 == pytest.approx(2 * s.precision * s.recall / (s.precision + s.recall))


def test_overall_pools_aspects_and_qualifies_category_names():
    cats = {"easy": ["a", "b"], "difficult": ["x", "y", "z"]}
    rows = [
        Scored("easy", [1, 0], [1, 0], True, reward=1.0, rewards={"format": 1.0}),
        Scored("easy", [0, 1], None, False, reward=0.0, rewards={"format": 0.0}),
        Scored("difficult", [0, 0, 1], [0, 1, 1], True, reward=0.5, rewards={"format": 1.0}),
    ]
    rep = model_report(rows, cats)
    assert list(rep) == ["overall", "easy", "difficult"]
    o = rep["overall"]
    assert list(o.per_category) == ["easy/a", "easy/b", "difficult/x", "difficult/y", "difficult/z"]
    # easy: a TP1 FP1, b FN1; difficult: y FP1, z TP1 -> TP2 FP2 FN1
    assert o.micro_f1 == pytest.approx(4 / 7)
    assert o.hamming_loss == pytest.approx((0 + 1 + 1 / 3) / 3)
    assert o.exact_match == pytest.approx(1 / 3)
    assert o.macro_f1 == pytest.approx((2 / 3 + 0 + 1 + 0 + 1) / 5)
    assert o.mean_reward == pytest.approx(0.5) and o.mean_rewards == {
        "format": pytest.approx(2 / 3)
    }
    assert rep["easy"].mean_reward == pytest.approx(0.5)
    assert rep["difficult"].per_category["x"].f1 == 1.0


def test_rows_without_gold_count_in_rates_only():
    rows = [Scored("easy", None, [1, 0, 0], True), Scored("easy", None, None, False)]
    m = aspect_metrics(rows, CATS)
    assert (m.n, m.n_labelled, m.format_valid_rate, m.label_valid_rate) == (2, 0, 0.5, 0.5)
    assert m.hamming_loss is None and m.micro_f1 is None and m.per_category == {}


def test_report_is_keyed_by_model_then_overall_and_aspects():
    rows = [Scored("easy", [1, 0, 0], [1, 0, 0], True)]
    rep = report({"policy": rows, "reference": rows}, {"easy": CATS, "difficult": CATS})
    assert list(rep) == ["policy", "reference"]
    assert list(rep["policy"]) == ["overall", "easy"]
    keys = {"format_valid_rate", "label_valid_rate", "hamming_loss", "exact_match", "micro_f1"}
    assert keys | {"macro_f1", "per_category", "mean_reward"} <= set(rep["policy"]["easy"])
    assert rep["policy"]["easy"]["per_category"]["a"]["f1"] == 1.0


def test_bad_inputs_are_bugs_not_silence():
    with pytest.raises(ValueError, match="no examples"):
        aspect_metrics([], CATS)
    with pytest.raises(ValueError, match="has 2 labels"):
        aspect_metrics([Scored("easy", [1, 0], [1, 0], True)], CATS)
    with pytest.raises(ValueError, match="does not have"):
        model_report([Scored("other", [1, 0, 0], None, False)], {"easy": CATS})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think> r </think>\n<label> [1, 0, 1, 0, 0] </label>", (True, [1, 0, 1, 0, 0])),
        ("<think>r</think><label>[1,0,1,0,0]</label> trailing", (True, [1, 0, 1, 0, 0])),
        ("<label>[0, 0, 0, 0, 1]</label>", (False, [0, 0, 0, 0, 1])),  # no think: label still read
        ("<think>r</think><label>[1, 0, 1]</label>", (True, None)),  # wrong length
        ("<think>r</think><label>[1, 0, 2, 0, 0]</label>", (True, None)),
        ("<think>r</think><label>[True, 0, 0, 0, 0]</label>", (True, None)),
        ("<think>r</think><label>[1, 0, 1, 0, 0]", (False, None)),  # unclosed
        (
            "<think>r</think><label>[1,0,0,0,0]</label><label>[0,1,0,0,0]</label>",
            (True, [0, 1, 0, 0, 0]),
        ),
        ("", (False, None)),
    ],
)
def test_parse_completion(text, expected):
    assert parse_completion(text, 5) == expected
