"""Bootstrap intervals, paired tests and degenerate answers (llmscisci_cfg.eval.stats), checked
against scikit-learn on materialised resamples, scipy's BCa, and hand-computed values."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest
from scipy.stats import binomtest
from scipy.stats import bootstrap as scipy_bootstrap
from sklearn import metrics as skm

from llmscisci_cfg.eval import stats
from llmscisci_cfg.eval.metrics import OVERALL, Scored, parts, report
from llmscisci_cfg.task.kinds import DimensionLabel, MultiLabel, SingleLabel

SINGLE = {"intent": SingleLabel(("background", "method", "result"))}
MULTI = {"easy": MultiLabel(("a", "b", "c")), "difficult": MultiLabel(("x", "y"))}
DIMS = {"tweet": DimensionLabel(("happy", "sad", "calm"), ("low", "medium", "high"))}


def _rows(kinds, seed: int, docs: int, skill: float) -> list[Scored]:
    """One example per document and aspect (the same gold for every seed); right with
    probability ``skill``, 10% invalid, 5% unlabelled, rewards on most."""
    rng, gold_rng = random.Random(seed), random.Random(0)
    out = []
    for d in range(docs):
        for aspect, kind in kinds.items():
            if kind.kind == "single":
                gold = gold_rng.choice([0, 0, 0, 1, 1, 2])
                guess = gold if rng.random() < skill else rng.randrange(kind.n)
            elif kind.kind == "multi":
                gold = [int(gold_rng.random() < 0.35) for _ in range(kind.n)]
                guess = [g if rng.random() < skill else 1 - g for g in gold]
            else:
                gold = [gold_rng.choice([0, 0, 1, 3]) for _ in range(kind.n)]
                guess = [g if rng.random() < skill else rng.randrange(4) for g in gold]
            if gold_rng.random() < 0.05:
                gold = None
            pred = None if rng.random() < 0.1 else guess
            reward = None if rng.random() < 0.1 else rng.random()
            out.append(Scored(aspect, gold, pred, rng.random() < 0.8, reward, doc=f"d{d}"))
    return out


def _boot(rows, kinds, resamples=300, seed=0, part=OVERALL):
    p = parts(rows, kinds)[part]
    index = stats.units(r.doc for r in rows)
    t = stats.PartTables.build(p, index)
    return t, stats.bootstrap(t.tables, t.values, resamples, seed), index


# ----------------------------------------------------------------------------- one convention


def _sklearn_of(rows: list[Scored], lay, labels_by_key: list[str]) -> dict[str, float]:
    """Accuracy and macro/micro F1 of ``rows`` by scikit-learn, ``labels=`` the given keys
    (the full set's supported classes), multi-label as a block-diagonal indicator matrix."""
    lab = [r for r in rows if r.gold is not None]
    kind, keys = lay.kind, list(lay.keys)
    if kind == "single":
        names = [keys[lay.blocks[r.aspect][0] + r.gold] for r in lab]
        preds = [
            "invalid" if r.predicted is None else keys[lay.blocks[r.aspect][0] + r.predicted]
            for r in lab
        ]
        out = {"accuracy": skm.accuracy_score(names, preds)}
        for avg in ("macro", "micro"):
            out[f"{avg}_f1"] = skm.f1_score(
                names, preds, labels=labels_by_key, average=avg, zero_division=0
            )
        return out
    gold = np.zeros((len(lab), len(keys)), int)
    pred = np.zeros_like(gold)
    for i, r in enumerate(lab):
        start = lay.blocks[r.aspect][0]
        g = np.array(r.gold) > 0
        p = ~g if r.predicted is None else np.array(r.predicted) > 0
        gold[i, start : start + len(g)], pred[i, start : start + len(g)] = g, p
    labels = [keys.index(k) for k in labels_by_key]
    out = {"accuracy": skm.accuracy_score(gold, pred) if kind == "multi" else None}
    for avg in ("macro", "micro"):
        out[f"{avg}_f1"] = skm.f1_score(gold, pred, labels=labels, average=avg, zero_division=0)
    return out


@pytest.mark.parametrize("kinds", [SINGLE, MULTI, DIMS], ids=["single", "multi", "dimensions"])
def test_a_resample_equals_scikit_learn_on_that_resample_materialised(kinds):
    rows = _rows(kinds, 5, docs=25, skill=0.6)
    t, boot, index = _boot(rows, kinds, resamples=15, seed=11)
    supported = [k for k, on in zip(t.part.layout.keys, t.mask, strict=True) if on]
    names = list(index)
    weights = next(stats.resample_weights(len(index), 15, 11))
    for b in range(15):
        copy = [
            r for d, times in zip(names, weights[b].astype(int), strict=True)
            for _ in range(times) for r in rows if r.doc == d
        ]  # fmt: skip
        expected = _sklearn_of(copy, t.part.layout, supported)
        for key, value in expected.items():
            if value is not None:
                assert boot.resampled[key][b] == pytest.approx(value, abs=1e-12), (b, key)


@pytest.mark.parametrize("kinds", [SINGLE, MULTI, DIMS], ids=["single", "multi", "dimensions"])
def test_point_estimates_are_the_statistic_of_the_plain_sums(kinds):
    rows = _rows(kinds, 1, docs=30, skill=0.7)
    rep = report({"m": rows}, kinds)["m"][OVERALL]
    _, boot, _ = _boot(rows, kinds, resamples=10)
    for key in stats.headline(next(iter(kinds.values())).kind):
        assert boot.point[key] == pytest.approx(rep[key], abs=1e-12), key


def test_a_resample_keeps_the_category_set_of_the_full_set():
    # 'result' has one gold example; a resample without it still averages over 3 categories
    rows = [Scored("intent", 0, 0, True, doc=f"a{i}") for i in range(5)]
    rows += [Scored("intent", 1, 1, True, doc=f"b{i}") for i in range(5)]
    rows += [Scored("intent", 2, 2, True, doc="c")]
    t, boot, index = _boot(rows, SINGLE, resamples=400)
    weights = next(stats.resample_weights(len(index), 400, 0))
    without = weights[:, index["c"]] == 0
    assert without.any()
    assert np.allclose(boot.resampled["macro_f1"][without], 2 / 3)  # (1 + 1 + 0) / 3
    assert np.allclose(boot.resampled["macro_f1"][~without], 1.0)


# ----------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("method", stats.METHODS)
def test_intervals_hold_their_point_estimates(method):
    rows = _rows(MULTI, 1, docs=40, skill=0.8)
    p = parts(rows, MULTI)
    ivs = stats.model_intervals({"m": p}, stats.units(r.doc for r in rows), 400, 3, method)["m"]
    points = report({"m": rows}, MULTI)["m"]
    widths = []
    for part, found in ivs.items():
        for key, iv in found["intervals"].items():
            point = points[part][key]
            assert iv is not None and iv[0] <= point <= iv[1], (part, key, iv, point)
            widths.append(iv[1] - iv[0])
        for name, per in found["per_class_intervals"].items():
            f1 = points[part]["per_class"][name]["f1"]
            assert (per["f1"] is None) == (f1 is None)
    assert min(widths) >= 0 and max(widths) > 0.05


def test_bca_equals_scipy_on_a_continuous_statistic():
    # the mean of 60 skewed values (sum / count): our BCa from our resamples against scipy's
    # from its own; both estimate the same endpoints, so they agree to the Monte Carlo error
    # of 20,000 draws (about ±0.01 here, measured over seeds), while BCa moves the upper end
    # of the percentile interval up by 0.045
    x = np.random.default_rng(0).exponential(size=60)
    table = np.c_[x, np.ones_like(x)]
    boot = stats.bootstrap([table], lambda s: {"mean": s[0][:, 0] / s[0][:, 1]}, 20_000, seed=1)
    ours = boot.interval("mean", "bca")
    theirs = scipy_bootstrap((x,), np.mean, n_resamples=20_000, method="BCa", random_state=2)
    ci = theirs.confidence_interval
    assert ours == pytest.approx([ci.low, ci.high], abs=0.02)
    percentile = boot.interval("mean", "percentile")
    assert ours[1] - percentile[1] > 0.03 and ours[0] - percentile[0] > 0.02


def test_the_resampling_unit_is_the_document():
    # every document: one section right, one wrong -> exact match is 0.5 in every document,
    # so resampling documents always gives 0.5; resampling sections would not
    rows = []
    for d in range(30):
        rows.append(Scored("easy", [1, 0, 0], [1, 0, 0], True, doc=f"d{d}"))
        rows.append(Scored("difficult", [1, 0], [0, 1], True, doc=f"d{d}"))
    _, boot, _ = _boot(rows, MULTI, resamples=500)
    assert boot.interval("accuracy") == [0.5, 0.5]
    assert boot.interval("hamming_loss", "percentile") == [0.5, 0.5]


def test_resamples_do_not_depend_on_the_chunk_size():
    one = np.concatenate(list(stats.resample_weights(13, 50, seed=4)))
    chunked = np.concatenate(list(stats.resample_weights(13, 50, seed=4, chunk=7)))
    assert one.shape == (50, 13) and (one == chunked).all() and (one.sum(axis=1) == 13).all()


def test_bootstrap_is_seeded():
    rows = _rows(SINGLE, 1, docs=20, skill=0.7)
    a = _boot(rows, SINGLE, 200, seed=4)[1].resampled["macro_f1"]
    assert (a == _boot(rows, SINGLE, 200, seed=4)[1].resampled["macro_f1"]).all()
    assert (a != _boot(rows, SINGLE, 200, seed=5)[1].resampled["macro_f1"]).any()


def test_undefined_values_give_no_interval_and_bca_falls_back():
    values = np.array([0.5, 0.5, np.nan])
    assert stats.interval(values, None) is None
    assert stats.interval(np.array([np.nan]), 0.5) is None
    assert stats.interval(values, 0.5, "bca", np.array([0.5, 0.5])) == [0.5, 0.5]
    with pytest.raises(ValueError, match="unknown interval method"):
        stats.interval(values, 0.5, "normal")


def test_speed_of_the_bootstrap_is_reasonable():
    rows_p = _rows(MULTI, 1, docs=300, skill=0.8)
    rows_r = _rows(MULTI, 2, docs=300, skill=0.6)
    started = time.perf_counter()
    index = stats.units(r.doc for r in rows_p)
    stats.model_intervals({"p": parts(rows_p, MULTI)}, index, 1000, 0)
    stats.compare(rows_p, rows_r, lambda rows: parts(rows, MULTI)[OVERALL], 1000)
    assert time.perf_counter() - started < 10.0  # about 1 s here


# ----------------------------------------------------------------------------- paired


def test_mcnemar_matches_the_exact_binomial_by_hand():
    b, c = 7, 1
    by_hand = min(1.0, 2 * sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))
    got = stats.mcnemar_exact(b, c)
    assert got["p_value"] == pytest.approx(by_hand) == pytest.approx(18 / 256)
    assert got["p_value"] == pytest.approx(binomtest(c, b + c, 0.5).pvalue)
    assert (got["statistic"], got["b"], got["c"]) == (1.0, 7, 1)
    assert stats.mcnemar_exact(0, 0)["p_value"] == 1.0


def _pooled(kinds):
    return lambda rows: parts(rows, kinds)[OVERALL]


def test_compare_single_counts_discordant_pairs_and_pairs_the_resamples():
    # 10 documents: policy right on 0-7, reference right on 6-9 (invalid elsewhere)
    policy = [Scored("intent", 0, 0 if d < 8 else 1, True, doc=f"d{d}") for d in range(10)]
    reference = [Scored("intent", 0, 0 if d >= 6 else None, False, doc=f"d{d}") for d in range(10)]
    c = stats.compare(policy, reference, _pooled(SINGLE), resamples=500)
    assert (c["mcnemar"]["b"], c["mcnemar"]["c"]) == (6, 2)
    assert c["mcnemar"]["p_value"] == pytest.approx(binomtest(2, 8, 0.5).pvalue)
    assert c["permutation"] is None  # single: McNemar says it all
    d = c["metric"]["accuracy"]
    assert d["difference"] == pytest.approx(0.8 - 0.4)
    assert d["interval"][0] <= d["difference"] <= d["interval"][1]
    same = stats.compare(policy, policy, _pooled(SINGLE), resamples=200)
    for key in stats.headline("single"):
        expected = None if key == "mean_reward" else [0.0, 0.0]  # no rewards here
        assert same["metric"][key]["interval"] == expected, key


def test_permutation_test_identical_models_and_a_clearly_better_one():
    assert stats.sign_flip_pvalue(np.zeros(40)) == 1.0  # random flips
    assert stats.sign_flip_pvalue(np.zeros(4)) == 1.0  # every sign vector
    assert stats.sign_flip_pvalue(np.ones(3)) == pytest.approx(2 / 8)  # by hand: ±3 of 8
    better = -np.full(30, 0.4) + np.random.default_rng(0).normal(0, 0.05, 30)
    p = stats.sign_flip_pvalue(better, permutations=2000, seed=1)
    assert p == pytest.approx(1 / 2001)
    noisy = np.random.default_rng(1).normal(0, 1, 30)
    assert stats.sign_flip_pvalue(noisy, 2000, 1) > 0.05


def test_permutation_flips_documents_not_sections():
    # per-section Hamming differences (policy − reference): d0 easy −1; d1 easy −1, difficult
    # −1; d2 easy +1. Documents: [−1, −2, +1], |sum| 2; of the 8 sign vectors 6 reach |sum| ≥
    # 2 -> p = 0.75. Flipping the 4 non-zero sections instead: 10 of 16 -> 0.625.
    right = {"easy": [1, 0, 0], "difficult": [1, 0]}
    wrong = {"easy": [0, 1, 1], "difficult": [0, 1]}
    plan = {
        "d0": {"easy": -1, "difficult": 0},
        "d1": {"easy": -1, "difficult": -1},
        "d2": {"easy": 1},
    }
    policy, reference = [], []
    for doc, sections in plan.items():
        for aspect, diff in sections.items():
            p, r = (wrong, right) if diff > 0 else (right, wrong) if diff < 0 else (right, right)
            policy.append(Scored(aspect, right[aspect], p[aspect], True, doc=doc))
            reference.append(Scored(aspect, right[aspect], r[aspect], True, doc=doc))
    perm = stats.compare(policy, reference, _pooled(MULTI), resamples=100)["permutation"]
    assert perm == {"loss": "hamming_loss", "p_value": 0.75, "permutations": 8, "exact": True}
    assert stats.sign_flip_pvalue(np.array([-1.0, -1.0, -1.0, 1.0])) == 0.625  # the wrong unit


def test_dimension_permutation_test_uses_the_wrong_level_share():
    gold = [3, 0, 0]
    policy = [Scored("tweet", gold, gold, True, doc=f"d{d}") for d in range(4)]
    reference = [Scored("tweet", gold, [1, 0, 0], True, doc=f"d{d}") for d in range(4)]
    c = stats.compare(policy, reference, _pooled(DIMS), resamples=100)
    assert c["permutation"]["loss"] == "wrong_level_share"
    assert c["permutation"]["p_value"] == pytest.approx(2 / 16)  # all 4 one way: ±4 of 16
    assert c["metric"]["intensity_accuracy"]["difference"] == pytest.approx(1 / 3)
    assert c["metric"]["dimension_accuracy"]["difference"] == 0.0


# ----------------------------------------------------------------------------- degenerate


def test_degenerate_shares_by_kind():
    answers = [("easy", [0, 0, 0]), ("easy", [0, 0, 0]), ("easy", [1, 0, 0]), ("easy", None),
               ("difficult", [1, 1]), ("difficult", [1, 1]), ("difficult", [0, 1])]  # fmt: skip
    d = stats.degenerate(answers, "multi")
    assert d == {"answers": 6, "all_zero": 2 / 6, "all_one": 2 / 6, "constant": 4 / 6}
    single = stats.degenerate([("i", 0), ("i", 0), ("i", 2), ("i", None)], "single")
    assert single == {"answers": 3, "all_zero": None, "all_one": None, "constant": 2 / 3}
    assert stats.degenerate([("easy", None)], "multi")["constant"] is None


def test_degenerate_flags_when_policy_share_rises():
    ref = {"all_zero": 0.1, "all_one": 0.0, "constant": 0.3}
    assert stats.degenerate_flags({"all_zero": 0.6, "all_one": 0.0, "constant": 0.3}, ref) == [
        "all_zero"
    ]
    assert stats.degenerate_flags({"all_zero": None, "all_one": None, "constant": 0.9}, ref) == [
        "constant"
    ]


def test_macro_f1_resamples_are_not_pushed_up_by_categories_a_resample_lacks():
    # issue 24: a category with no gold and no answer in a resample scored F1 = 1.0, so 79% of
    # resamples sat above the point. Six categories, two of them with one gold example each
    # that the model misses: resamples that lack them keep them in the average, at 0.
    kind = {"f": SingleLabel(("bg", "uses", "compares", "motivation", "extends", "future"))}
    rng = random.Random(7)
    rows = []
    for d in range(40):
        gold = 4 if d == 0 else 5 if d == 1 else rng.choice([0, 0, 0, 1, 1, 2, 3])
        pred = 0 if gold in (4, 5) else (gold if rng.random() < 0.6 else rng.randrange(4))
        rows.append(Scored("f", gold, pred, True, doc=f"d{d}"))
    _, boot, _ = _boot(rows, kind, resamples=2000)
    point, values = boot.point["macro_f1"], boot.resampled["macro_f1"]
    gold = [r.gold for r in rows]
    labels = sorted(set(gold))
    assert point == pytest.approx(
        skm.f1_score(gold, [r.predicted for r in rows], labels=labels, average="macro")
    )
    assert np.mean(values > point) < 0.6 and abs(np.median(values) - point) < 0.03
    lo, hi = boot.interval("macro_f1")
    assert lo < point < hi and hi - point < 2 * (point - lo)  # not stretched upward
