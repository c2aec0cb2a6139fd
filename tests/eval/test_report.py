"""The eval files from known predictions (no model): report.json, recompute, report.md, plot."""

from __future__ import annotations

import json

import pytest

from llmscisci_cfg.eval import report as eval_report
from llmscisci_cfg.eval.report import EvalMeta, Prediction

CATS = {"easy": ["code", "artifacts", "none"], "difficult": ["algorithm", "math", "none"]}
GOOD = "<think>code is public</think>\n<label> [1, 0, 0] </label>"


def _meta(**kw) -> EvalMeta:
    base = dict(
        recipe="demo",
        run_dir="runs/demo",
        split="test",
        categories=CATS,
        models={"policy": "runs/demo/final (full model)", "reference": "builtin:tiny"},
        max_new_tokens=32,
        batch_size=4,
        limit=None,
        device="cpu",
        dtype="float32",
        reward_names=["format"],
    )
    return EvalMeta(**(base | kw))


def _predictions() -> list[Prediction]:
    return [
        Prediction("d1", "easy", "policy", [1, 0, 0], GOOD, [1, 0, 0], 1.0, {"format": 1.0}),
        Prediction("d1", "difficult", "policy", [0, 1, 0], "<label>[0, 1, 1]</label>", [0, 1, 1],
                   0.0, {"format": 0.0}),
        Prediction("d1", "easy", "reference", [1, 0, 0], "garbage", None, 0.0, {"format": 0.0}),
        Prediction("d1", "difficult", "reference", [0, 1, 0], "", None, 0.0, {"format": 0.0}),
    ]  # fmt: skip


def test_write_all_and_recompute(tmp_path):
    preds = _predictions()
    rep = eval_report.write_all(tmp_path, preds, _meta())
    assert json.loads((tmp_path / "report.json").read_text()) == rep
    assert eval_report.recompute(tmp_path / "predictions.jsonl") == rep
    assert eval_report.recompute(tmp_path / "predictions.jsonl", CATS) == rep
    assert eval_report.read_predictions(tmp_path / "predictions.jsonl") == preds

    p, r = rep["policy"]["overall"], rep["reference"]["overall"]
    # policy: easy exact; difficult predicts 'none' wrongly (FP) -> 1 wrong of 6 positions
    assert (p["format_valid_rate"], p["label_valid_rate"]) == (0.5, 1.0)
    assert p["hamming_loss"] == pytest.approx((0 + 1 / 3) / 2)
    assert p["exact_match"] == 0.5 and p["micro_f1"] == pytest.approx(4 / 5)
    assert p["mean_reward"] == 0.5 and p["mean_rewards"] == {"format": 0.5}
    # reference: both invalid -> complements, Hamming 1, no true positives
    assert (r["format_valid_rate"], r["label_valid_rate"], r["hamming_loss"]) == (0.0, 0.0, 1.0)
    assert r["micro_f1"] == 0.0 and r["macro_f1"] == 0.0
    assert list(rep["policy"]["easy"]["per_category"]) == CATS["easy"]


def test_recompute_detects_edited_predictions(tmp_path):
    rep = eval_report.write_all(tmp_path, _predictions(), _meta())
    path = tmp_path / "predictions.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[0])
    row["predicted"] = [0, 1, 0]
    path.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    assert eval_report.recompute(path) != rep


def test_markdown_states_rules_and_shows_models_side_by_side(tmp_path):
    eval_report.write_all(tmp_path, _predictions(), _meta(limit=2))
    md = (tmp_path / "report.md").read_text()
    assert "| metric | policy | reference |" in md
    assert "| format_valid_rate | 0.500 | 0.000 |" in md
    assert "| mean reward format | 0.500 | 0.000 |" in md
    assert "| 1 | code | 1 | 1.000 | 0.000 |" in md
    assert "complement of the gold vector" in md and "never skipped" in md
    assert "first 2 examples only" in md
    assert "### d1 (easy)" in md and "**policy**, predicted `[1, 0, 0]`" in md


def test_summary_table_is_the_last_thing_printed():
    rep = eval_report.build_report(_predictions(), CATS)
    lines = eval_report.summary_table(rep).splitlines()
    assert lines[0].split() == ["model", "format_valid", "label_valid", "hamming_loss", "micro_f1"]
    assert lines[1].split() == ["policy", "0.500", "1.000", "0.167", "0.800"]
    assert lines[2].split() == ["reference", "0.000", "0.000", "1.000", "0.000"]


def test_one_model_and_unlabelled_rows(tmp_path):
    preds = [Prediction("d1", "easy", "policy", None, GOOD, [1, 0, 0])]
    rep = eval_report.write_all(tmp_path, preds, _meta(models={"policy": "m"}))
    o = rep["policy"]["overall"]
    assert (o["n"], o["n_labelled"], o["format_valid_rate"], o["micro_f1"]) == (1, 0, 1.0, None)
    assert o["mean_reward"] is None
    assert (tmp_path / "per_category_f1.png").read_bytes()[:4] == b"\x89PNG"
    assert "| micro_f1 | – |" in (tmp_path / "report.md").read_text()
