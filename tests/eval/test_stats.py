"""Bootstrap intervals, paired tests and degenerate answers (llmscisci_cfg.eval.stats), checked
against hand-computed values and an independent plain-Python scorer."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy.stats import binomtest

from llmscisci_cfg.eval import stats
from llmscisci_cfg.eval.metrics import Scored, aspect_metrics, overall_metrics, report

CATS = {"easy": ["a", "b", "c"], "difficult": ["x", "y"], "other": ["z"]}


def _random_rows(seed: int, docs: int, skill: float, aspects=CATS) -> list[Scored]:
    """One example per document and aspect; right with probability ``skill`` per position,
    some invalid answers, some unlabelled rows, some documents missing an aspect."""
    rng = random.Random(seed)
    gold_rng = random.Random(0)  # the same gold for every model
    rows = []
    for d in range(docs):
        for aspect, names in aspects.items():
            gold = [int(gold_rng.random() < 0.3) for _ in names]
            if gold_rng.random() < 0.1:
                continue  # this document has no such section
            if gold_rng.random() < 0.05:
                gold = None
            roll = rng.random()
            if roll < 0.1:
                predicted = None
            elif roll < 0.12:
                predicted = [1] * (len(names) + 1)  # wrong length: invalid
            else:
                base = gold or [0] * len(names)
                predicted = [g if rng.random() < skill else 1 - g for g in base]
            reward = None if rng.random() < 0.1 else rng.random()
            rows.append(Scored(aspect, gold, predicted, rng.random() < 0.8, reward, doc=f"d{d}"))
    return rows


# ----------------------------------------------------------------------------- plain Python


def _plain(rows: list[Scored], categories: dict[str, list[str]]) -> dict:
    """The scoring rules written out again without numpy or scikit-learn."""
    labelled = [r for r in rows if r.gold is not None]
    out = {
        "format_valid_rate": sum(r.format_valid for r in rows) / len(rows),
        "label_valid_rate": sum(r.predicted is not None for r in rows) / len(rows),
    }
    rewards = [r.reward for r in rows if r.reward is not None]
    out["mean_reward"] = sum(rewards) / len(rewards) if rewards else None
    if not labelled:
        return out | {"hamming_loss": None, "exact_match": None, "micro_f1": None}
    counts, ham, exact = {}, 0.0, 0
    for r in labelled:
        valid = r.predicted is not None and len(r.predicted) == len(r.gold)
        pred = r.predicted if valid else [1 - g for g in r.gold]
        ham += sum(g != p for g, p in zip(r.gold, pred, strict=True)) / len(r.gold)
        exact += pred == r.gold
        for name, g, p in zip(categories[r.aspect], r.gold, pred, strict=True):
            c = counts.setdefault(f"{r.aspect}/{name}", [0, 0, 0])
            c[0] += g and p
            c[1] += p and not g
            c[2] += g and not p
    aspects = {r.aspect for r in labelled}
    for aspect in aspects:  # categories of a labelled aspect that never occur: error-free
        for name in categories[aspect]:
            counts.setdefault(f"{aspect}/{name}", [0, 0, 0])

    def f1(tp, fp, fn):
        return 1.0 if tp == fp == fn == 0 else 2 * tp / (2 * tp + fp + fn)

    totals = [sum(c[k] for c in counts.values()) for k in range(3)]
    return out | {
        "hamming_loss": ham / len(labelled),
        "exact_match": exact / len(labelled),
        "micro_f1": f1(*totals),
        "macro_f1": sum(f1(*c) for c in counts.values()) / len(counts),
        "per_category": {k: f1(*c) for k, c in counts.items()},
    }


@pytest.mark.parametrize("seed", range(8))
def test_metrics_equal_a_plain_python_recomputation(seed):
    rows = _random_rows(seed, docs=15, skill=0.7)
    expected = _plain(rows, CATS)
    got = overall_metrics(rows, CATS)
    for key, value in expected.items():
        if key == "per_category":
            assert {k: s.f1 for k, s in got.per_category.items()} == pytest.approx(value)
        else:
            assert getattr(got, key) == pytest.approx(value, abs=1e-12), key
    for aspect, names in CATS.items():
        mine = [r for r in rows if r.aspect == aspect]
        plain = _plain(mine, CATS)
        m = aspect_metrics(mine, names)
        assert m.micro_f1 == pytest.approx(plain["micro_f1"], abs=1e-12)
        assert m.hamming_loss == pytest.approx(plain["hamming_loss"], abs=1e-12)
        assert m.macro_f1 == pytest.approx(plain.get("macro_f1"), abs=1e-12)


def test_error_free_category_is_one_and_one_category_aspects_score_label_one():
    rows = [
        Scored("other", [1], [1], True, doc="d1"),
        Scored("other", [0], None, True, doc="d2"),  # complement [1]: a false positive
        Scored("easy", [1, 0, 0], [1, 0, 0], True, doc="d1"),  # b, c: error-free
    ]
    m = overall_metrics(rows, CATS)
    f1 = {k: s.f1 for k, s in m.per_category.items()}
    assert f1 == {"easy/a": 1.0, "easy/b": 1.0, "easy/c": 1.0, "other/z": pytest.approx(2 / 3)}
    z = m.per_category["other/z"]
    assert (z.tp, z.fp, z.fn, z.tn) == (1, 1, 0, 0)


# ----------------------------------------------------------------------------- bootstrap


def _points(rows_by_model):
    return report(rows_by_model, CATS)


def test_intervals_contain_their_point_estimates():
    by_model = {
        "policy": _random_rows(1, docs=40, skill=0.85),
        "reference": _random_rows(2, docs=40, skill=0.6),
    }
    points = _points(by_model)
    ivs = stats.intervals(by_model, CATS, points, resamples=500, seed=3)
    widths = []
    for model, parts in ivs.items():
        assert set(parts) == set(points[model])
        for part, metrics in parts.items():
            for key, iv in metrics.items():
                point = points[model][part][key]
                assert iv is not None and iv[0] <= point <= iv[1], (model, part, key, iv, point)
                widths.append(iv[1] - iv[0])
    assert min(widths) >= 0 and max(widths) > 0.05  # real intervals, not points


def test_the_resampling_unit_is_the_document():
    # every document: one section right, one wrong -> exact match is 0.5 in every document, so
    # resampling documents always gives 0.5; resampling sections would not
    rows = []
    for d in range(30):
        rows.append(Scored("easy", [1, 0, 0], [1, 0, 0], True, doc=f"d{d}"))
        rows.append(Scored("difficult", [1, 0], [0, 1], True, doc=f"d{d}"))
    by_model = {"policy": rows}
    iv = stats.intervals(by_model, CATS, _points(by_model), resamples=1000, seed=0)
    assert iv["policy"]["overall"]["exact_match"] == [0.5, 0.5]
    assert iv["policy"]["overall"]["hamming_loss"] == [0.5, 0.5]

    sections = np.array([1.0, 0.0] * 30)
    rng = np.random.default_rng(0)
    by_section = sections[rng.integers(0, 60, size=(1000, 60))].mean(axis=1)
    lo, hi = np.percentile(by_section, [2.5, 97.5])
    assert hi - lo > 0.2  # what the wrong unit would have reported


def test_a_resample_equals_the_metrics_of_that_resample_materialised():
    rows = _random_rows(5, docs=12, skill=0.6)
    docs = stats.documents(rows)
    weights = stats.resample_weights(len(docs), resamples=20, seed=11)
    assert (weights.sum(axis=1) == len(docs)).all()
    table = stats.doc_table(rows, docs, CATS)
    values = stats.headline(weights @ table.values, table)
    names = list(docs)
    for b in range(20):
        copy = [
            Scored(r.aspect, r.gold, r.predicted, r.format_valid, r.reward, doc=f"{r.doc}#{k}")
            for d, times in zip(names, weights[b].astype(int), strict=True)
            for k in range(times)
            for r in rows
            if r.doc == d
        ]
        m = overall_metrics(copy, CATS).as_dict()
        for key in stats.HEADLINE:
            assert values[key][b] == pytest.approx(m[key], abs=1e-12), (b, key)


def test_bootstrap_is_seeded():
    by_model = {"policy": _random_rows(1, docs=20, skill=0.7)}
    points = _points(by_model)
    a = stats.intervals(by_model, CATS, points, resamples=200, seed=4)
    assert a == stats.intervals(by_model, CATS, points, resamples=200, seed=4)
    assert a != stats.intervals(by_model, CATS, points, resamples=200, seed=5)


def test_speed_of_the_bootstrap_is_reasonable():
    # 100 documents × 3 aspects × 2 models, 1000 resamples: intervals and the comparison
    import time

    by_model = {
        "policy": _random_rows(1, docs=100, skill=0.8),
        "reference": _random_rows(2, docs=100, skill=0.6),
    }
    points = _points(by_model)
    started = time.perf_counter()
    stats.intervals(by_model, CATS, points, resamples=1000, seed=0)
    stats.compare(by_model["policy"], by_model["reference"], CATS, resamples=1000)
    assert time.perf_counter() - started < 5.0  # about 0.1 s here; a loop of sklearn calls: minutes


# ----------------------------------------------------------------------------- paired


def test_mcnemar_matches_the_exact_binomial_by_hand():
    b, c = 7, 1
    by_hand = min(1.0, 2 * sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))
    got = stats.mcnemar_exact(b, c)
    assert got["p_value"] == pytest.approx(by_hand) == pytest.approx(18 / 256)
    assert got["p_value"] == pytest.approx(binomtest(c, b + c, 0.5).pvalue)
    assert (got["statistic"], got["b"], got["c"]) == (1.0, 7, 1)
    assert stats.mcnemar_exact(0, 0)["p_value"] == 1.0


def test_compare_counts_discordant_pairs_and_pairs_the_resamples():
    # 10 documents, one example each: policy right on 0-7, reference right on 6-9
    gold = [1, 0, 0]
    policy = [
        Scored("easy", gold, gold if d < 8 else [0, 1, 0], True, doc=f"d{d}") for d in range(10)
    ]
    reference = [
        Scored("easy", gold, gold if d >= 6 else None, False, doc=f"d{d}") for d in range(10)
    ]
    c = stats.compare(policy, reference, CATS, resamples=500, seed=0)
    mc = c["mcnemar_exact_match"]
    assert (mc["b"], mc["c"]) == (6, 2)
    assert mc["p_value"] == pytest.approx(binomtest(2, 8, 0.5).pvalue)
    d = c["metric"]["exact_match"]
    assert d["difference"] == pytest.approx(0.8 - 0.4)
    assert d["interval"][0] <= d["difference"] <= d["interval"][1]
    assert (c["examples"], c["documents"]) == (10, 10)

    same = stats.compare(policy, policy, CATS, resamples=500, seed=0)
    for key in stats.HEADLINE:  # the same resamples for both: differences exactly 0
        expected = None if key == "mean_reward" else [0.0, 0.0]  # no rewards here
        assert same["metric"][key]["interval"] == expected
    assert same["permutation_hamming"]["p_value"] == 1.0


def test_permutation_test_identical_models_and_a_clearly_better_one():
    assert stats.sign_flip_pvalue(np.zeros(40)) == 1.0  # random flips
    assert stats.sign_flip_pvalue(np.zeros(4)) == 1.0  # every sign vector
    assert stats.sign_flip_pvalue(np.ones(3)) == pytest.approx(2 / 8)  # by hand: ±3 of 8
    better = -np.full(30, 0.4) + np.random.default_rng(0).normal(0, 0.05, 30)
    p = stats.sign_flip_pvalue(better, permutations=2000, seed=1)
    assert p == pytest.approx(1 / 2001)
    assert stats.sign_flip_pvalue(better, 2000, 1) == p  # seeded
    noisy = np.random.default_rng(1).normal(0, 1, 30)
    assert stats.sign_flip_pvalue(noisy, 2000, 1) > 0.05


def test_permutation_flips_documents_not_sections():
    # per-section Hamming differences (policy − reference): d0 easy −1; d1 easy −1, difficult −1;
    # d2 easy +1. Documents: [−1, −2, +1], |sum| 2; of the 8 sign vectors 6 reach |sum| ≥ 2 ->
    # p = 0.75. Flipping the 4 non-zero sections instead: 10 of 16 -> 0.625.
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
    perm = stats.compare(policy, reference, CATS, resamples=100)["permutation_hamming"]
    assert perm == {"p_value": 0.75, "permutations": 8, "exact": True}
    assert stats.sign_flip_pvalue(np.array([-1.0, -1.0, -1.0, 1.0])) == 0.625  # the wrong unit


# ----------------------------------------------------------------------------- degenerate


def test_degenerate_shares_by_hand():
    answers = [
        ("easy", [0, 0, 0]),
        ("easy", [0, 0, 0]),
        ("easy", [1, 0, 0]),
        ("easy", None),  # invalid: not an answer
        ("difficult", [1, 1]),
        ("difficult", [1, 1]),
        ("difficult", [0, 1]),
    ]
    d = stats.degenerate(answers)
    # 6 valid: all-zero 2, all-one 2, modal answer 2 (easy) + 2 (difficult)
    assert d == {"answers": 6, "all_zero": 2 / 6, "all_one": 2 / 6, "constant": 4 / 6}
    assert stats.degenerate([("easy", None)])["constant"] is None
    constant = stats.degenerate([("easy", [1, 0, 0])] * 5 + [("difficult", [0, 1])] * 3)
    assert constant["constant"] == 1.0


def test_degenerate_flags_when_policy_share_rises():
    ref = {"all_zero": 0.1, "all_one": 0.0, "constant": 0.3}
    assert stats.degenerate_flags({"all_zero": 0.6, "all_one": 0.0, "constant": 0.3}, ref) == [
        "all_zero"
    ]
    assert stats.degenerate_flags({"all_zero": 0.12, "all_one": 0.9, "constant": 0.9}, ref) == [
        "constant"
    ]
    assert stats.degenerate_flags({"all_zero": None, "all_one": None, "constant": None}, ref) == []
