"""Label metrics by answer kind (llmscisci_cfg.eval.metrics, eval.counts) against scikit-learn,
on random tables with invalid answers, categories without gold support and unlabelled rows,
and the conventions asserted on small hand-made tables."""

from __future__ import annotations

import doctest
import random

import numpy as np
import pytest
from sklearn import metrics as skm

from llmscisci_cfg.eval import counts
from llmscisci_cfg.eval import metrics as metrics_module
from llmscisci_cfg.eval.metrics import Scored, frequencies, model_report, report
from llmscisci_cfg.task.kinds import DimensionLabel, MultiLabel, SingleLabel

SINGLE = SingleLabel(("background", "method", "result", "future"))
MULTI = MultiLabel(("code", "artifacts", "text", "setup", "none"))
DIMS = DimensionLabel(("happiness", "anxiety", "trust", "pain"), ("low", "medium", "high"))
AVERAGES = ("macro", "micro", "weighted")


def test_module_doctests():
    assert doctest.testmod(metrics_module).failed == 0
    assert doctest.testmod(counts).failed == 0


def _single_rows(seed: int, n: int = 60) -> list[Scored]:
    """Gold never 'future' (no support); answers right 60%, invalid 15%, else any category
    (so 'future' gets false positives)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        gold = rng.choice([0, 0, 0, 1, 1, 2])
        roll = rng.random()
        pred = gold if roll < 0.6 else None if roll < 0.75 else rng.randrange(4)
        rows.append(Scored("intent", gold, pred, pred is not None, doc=f"d{i}"))
    return rows


def _sk_single(rows: list[Scored]) -> tuple[list[int], list[int], list[int]]:
    """Gold, predictions with invalid as -1 (a label outside `labels=`), supported labels."""
    gold = [r.gold for r in rows]
    pred = [-1 if r.predicted is None else r.predicted for r in rows]
    return gold, pred, sorted(set(gold))


@pytest.mark.parametrize("seed", range(6))
def test_single_label_metrics_equal_scikit_learn(seed):
    rows = _single_rows(seed)
    m = model_report(rows, {"intent": SINGLE})["intent"]
    gold, pred, labels = _sk_single(rows)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(gold, pred), abs=1e-12)
    for avg in AVERAGES:
        p, r, f, _ = skm.precision_recall_fscore_support(
            gold, pred, labels=labels, average=avg, zero_division=0
        )
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == pytest.approx(
            (p, r, f), abs=1e-12
        ), avg
    p, r, f, s = skm.precision_recall_fscore_support(
        gold, pred, labels=labels, average=None, zero_division=0
    )
    for i, label in enumerate(labels):
        got = m["per_class"][SINGLE.categories[label]]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(
            (p[i], r[i], f[i], s[i]), abs=1e-12
        )
    assert m["invalid"] == sum(x == -1 for x in pred)
    cm = skm.confusion_matrix(gold, pred, labels=[0, 1, 2, 3, -1])
    assert [row[:5] for row in m["confusion"]["matrix"]] == cm[:4, :].tolist()
    assert m["confusion"]["columns"][-1] == "invalid"


def test_a_category_without_gold_support_is_not_a_free_one():
    # the issue-24 bug: 'future' never in gold and never predicted reported F1 = 1.0
    rows = [
        Scored("intent", 0, 0, True),
        Scored("intent", 0, 1, True),
        Scored("intent", 1, 1, True),
        Scored("intent", 2, None, False),
    ]
    m = model_report(rows, {"intent": SINGLE})["intent"]
    assert m["per_class"]["future"] == {
        "precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0,
    }  # fmt: skip
    # background: P 1, R 1/2, F1 2/3; method: P 1/2, R 1, F1 2/3; result: never answered, 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score([0, 0, 1, 2], [0, 1, 1, -1], labels=[0, 1, 2], average="macro")
    )
    # micro over the supported categories: the invalid answer is a miss, not a false alarm
    assert (m["micro_precision"], m["micro_recall"]) == pytest.approx((2 / 3, 2 / 4))
    assert (m["accuracy"], m["invalid"], m["label_valid_rate"]) == (0.5, 1, 0.75)


def _multi_rows(seed: int, n: int = 50, kind: MultiLabel = MULTI, aspect="easy") -> list[Scored]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        gold = [int(rng.random() < p) for p in (0.5, 0.3, 0.2, 0.1, 0.0)][: kind.n]
        roll = rng.random()
        if roll < 0.1:
            pred = None
        else:
            pred = [g if rng.random() < 0.8 else 1 - g for g in gold]
        rows.append(Scored(aspect, gold, pred, True, doc=f"d{i}"))
    return rows


def _effective(gold: list[int], pred: list[int] | None) -> list[int]:
    return [1 - g for g in gold] if pred is None else list(pred)


@pytest.mark.parametrize("seed", range(6))
def test_multi_label_metrics_equal_scikit_learn(seed):
    rows = _multi_rows(seed)
    m = model_report(rows, {"easy": MULTI})["easy"]
    gold = np.array([r.gold for r in rows])
    pred = np.array([_effective(r.gold, r.predicted) for r in rows])
    labels = [i for i in range(MULTI.n) if gold[:, i].any()]
    assert 4 not in labels  # 'none' never in gold: out of the averages
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(gold, pred), abs=1e-12)
    assert m["hamming_loss"] == pytest.approx(skm.hamming_loss(gold, pred), abs=1e-12)
    assert m["jaccard"] == pytest.approx(
        skm.jaccard_score(gold, pred, average="samples", zero_division=1), abs=1e-12
    )
    for avg in AVERAGES:
        p, r, f, _ = skm.precision_recall_fscore_support(
            gold, pred, labels=labels, average=avg, zero_division=0
        )
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == pytest.approx(
            (p, r, f), abs=1e-12
        ), avg
    f = skm.f1_score(gold, pred, average=None, zero_division=0)
    for i, name in enumerate(MULTI.categories):
        expected = f[i] if i in labels else None
        assert m["per_class"][name]["f1"] == pytest.approx(expected, abs=1e-12)
    cm = skm.multilabel_confusion_matrix(gold, pred)
    for i, name in enumerate(MULTI.categories):
        (tn, fp), (fn, tp) = cm[i].tolist()
        assert m["confusion"][name] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_multi_invalid_answer_is_the_complement_of_gold():
    rows = [
        Scored("easy", [1, 0, 0, 0, 0], None, False),
        Scored("easy", [0, 0, 0, 0, 0], None, True),
    ]
    m = model_report(rows, {"easy": MULTI})["easy"]
    assert (m["hamming_loss"], m["accuracy"], m["jaccard"], m["invalid"]) == (1.0, 0.0, 0.0, 2)
    assert m["confusion"]["code"] == {"tp": 0, "fp": 1, "fn": 1, "tn": 0}
    assert m["confusion"]["none"] == {"tp": 0, "fp": 2, "fn": 0, "tn": 0}
    assert m["macro_f1"] == 0.0 and m["per_class"]["none"]["f1"] is None


def _dim_rows(seed: int, n: int = 40) -> list[Scored]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        gold = [rng.choice([0, 0, 1, 2, 3]) for _ in range(3)] + [0]  # 'pain' never present
        roll = rng.random()
        if roll < 0.1:
            pred = None
        else:
            pred = [g if rng.random() < 0.7 else rng.randrange(4) for g in gold]
        rows.append(Scored("tweet", gold, pred, True, doc=f"d{i}"))
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_dimension_metrics_equal_scikit_learn(seed):
    rows = _dim_rows(seed)
    m = model_report(rows, {"tweet": DIMS})["tweet"]
    gold = np.array([r.gold for r in rows])
    valid = np.array([r.predicted is not None for r in rows])
    levels = np.array([r.predicted if r.predicted is not None else [-1] * 4 for r in rows])
    g_present = (gold > 0).astype(int)
    p_present = np.where(valid[:, None], (levels > 0).astype(int), 1 - g_present)
    flat_g, flat_p = g_present.ravel(), p_present.ravel()
    assert m["dimension_accuracy"] == pytest.approx(skm.accuracy_score(flat_g, flat_p), abs=1e-12)
    assert m["intensity_accuracy"] == pytest.approx(
        skm.accuracy_score(gold.ravel(), levels.ravel()), abs=1e-12
    )
    (tn, fp), (fn, tp) = skm.confusion_matrix(flat_g, flat_p, labels=[0, 1]).tolist()
    assert m["fn_rate"] == pytest.approx(fn / (tp + fn)) and m["fp_rate"] == pytest.approx(
        fp / (fp + tn)
    )
    assert m["jaccard"] == pytest.approx(
        skm.jaccard_score(g_present, p_present, average="samples", zero_division=1), abs=1e-12
    )
    assert m["accuracy"] == pytest.approx(np.mean((gold == levels).all(axis=1)), abs=1e-12)
    labels = [i for i in range(4) if g_present[:, i].any()]
    f = skm.f1_score(g_present, p_present, average=None, zero_division=0)
    for i, name in enumerate(DIMS.categories):
        assert m["per_class"][name]["f1"] == pytest.approx(f[i] if i in labels else None)
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score(g_present, p_present, labels=labels, average="macro", zero_division=0)
    )
    # the level confusion over valid cells, then the invalid rows' cells in their own column
    cm = skm.confusion_matrix(gold[valid].ravel(), levels[valid].ravel(), labels=[0, 1, 2, 3])
    got = np.array(m["confusion"]["matrix"])
    assert m["confusion"]["rows"] == ["not present", "low", "medium", "high"]
    assert got[:, :4].tolist() == cm.tolist()
    assert got[:, 4].tolist() == np.bincount(gold[~valid].ravel(), minlength=4).tolist()


def test_dimension_conventions_by_hand():
    rows = [
        Scored("tweet", [0, 0, 0, 0], [0, 0, 0, 0], True),  # both empty: Jaccard 1, exact
        Scored("tweet", [3, 0, 0, 0], [1, 0, 0, 0], True),  # present right, level wrong
        Scored("tweet", [0, 2, 0, 0], None, False),  # invalid: complement [1, 0, 1, 1]
    ]
    m = model_report(rows, {"tweet": DIMS})["tweet"]
    assert m["dimension_accuracy"] == pytest.approx(8 / 12)
    assert m["intensity_accuracy"] == pytest.approx(7 / 12)
    assert m["jaccard"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["accuracy"] == pytest.approx(1 / 3)
    # presence: TP 1 (row 2), FN 1 (row 3 anxiety), FP 3 (row 3), TN 7
    assert m["fn_rate"] == pytest.approx(1 / 2) and m["fp_rate"] == pytest.approx(3 / 10)


def test_overall_pools_aspects_with_qualified_keys_and_equals_scikit_learn():
    other = MultiLabel(("x", "y", "z"))
    rows = _multi_rows(1, 30) + _multi_rows(2, 20, other, "difficult")
    kinds = {"easy": MULTI, "difficult": other}
    o = model_report(rows, kinds)["overall"]
    assert list(o["per_class"])[:2] == ["easy/code", "easy/artifacts"]
    assert "confusion" not in o
    # block-diagonal stacking: a row is 0 outside its aspect, which adds only true negatives
    gold = np.zeros((50, 8), int)
    pred = np.zeros((50, 8), int)
    for i, r in enumerate(rows):
        start = 0 if r.aspect == "easy" else 5
        gold[i, start : start + len(r.gold)] = r.gold
        pred[i, start : start + len(r.gold)] = _effective(r.gold, r.predicted)
    labels = [i for i in range(8) if gold[:, i].any()]
    for avg in AVERAGES:
        assert o[f"{avg}_f1"] == pytest.approx(
            skm.f1_score(gold, pred, labels=labels, average=avg, zero_division=0), abs=1e-12
        )
    assert o["accuracy"] == pytest.approx(skm.accuracy_score(gold, pred))
    per_row = [np.mean(np.array(r.gold) != np.array(_effective(r.gold, r.predicted))) for r in rows]
    assert o["hamming_loss"] == pytest.approx(np.mean(per_row))


def test_rows_without_gold_count_in_rates_only_and_rewards_are_averaged():
    rows = [
        Scored("intent", None, 1, True, reward=1.0, rewards={"format": 1.0}),
        Scored("intent", None, None, False, reward=0.0, rewards={"format": 0.0}),
    ]
    m = model_report(rows, {"intent": SINGLE})["intent"]
    assert (m["n"], m["n_labelled"], m["format_valid_rate"], m["label_valid_rate"]) == (
        2, 0, 0.5, 0.5,
    )  # fmt: skip
    assert m["accuracy"] is None and m["macro_f1"] is None and m["per_class"] == {}
    assert m["mean_reward"] == 0.5 and m["mean_rewards"] == {"format": 0.5}


def test_report_and_frequencies_by_kind():
    rows = [Scored("intent", 0, 2, True, doc="d1"), Scored("intent", 2, None, False, doc="d2")]
    rep = report({"policy": rows, "reference": rows}, {"intent": SINGLE})
    assert list(rep) == ["policy", "reference"] and list(rep["policy"]) == ["overall", "intent"]
    freq = frequencies({"policy": rows}, {"intent": SINGLE})
    assert freq["gold"] == {"intent/background": 1, "intent/method": 0, "intent/result": 1,
                            "intent/future": 0}  # fmt: skip
    assert freq["policy"]["intent/result"] == 1 and sum(freq["policy"].values()) == 1


def test_bad_inputs_are_bugs_not_silence():
    with pytest.raises(ValueError, match="not a valid single value"):
        model_report([Scored("intent", 7, 0, True)], {"intent": SINGLE})
    with pytest.raises(ValueError, match="does not have"):
        model_report([Scored("other", 0, 0, True)], {"intent": SINGLE})
    with pytest.raises(ValueError, match="different answer kinds"):
        metrics_module.kind_name({"a": SINGLE, "b": MULTI})


def test_wrong_length_or_out_of_range_answers_are_invalid():
    rows = [Scored("easy", [1, 0, 0, 0, 0], [1, 0], True), Scored("intent", 0, 9, True)]
    assert model_report(rows[:1], {"easy": MULTI})["easy"]["invalid"] == 1
    assert model_report(rows[1:], {"intent": SINGLE})["intent"]["invalid"] == 1


def test_rules_state_every_convention():
    for kind in ("single", "multi", "dimensions"):
        text = " ".join(metrics_module.rules(kind))
        assert "labels=" in text and "zero_division=0" in text and "never skipped" in text
