"""The eval files from known predictions (no model), for each answer kind: report.json,
recompute, report.md, the plot."""

from __future__ import annotations

import json

import pytest

from llmscisci_cfg.eval import report as eval_report
from llmscisci_cfg.eval.report import EvalMeta, Prediction
from llmscisci_cfg.task.kinds import DimensionLabel, MultiLabel, SingleLabel, wire

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
        kinds={a: wire(MultiLabel(tuple(c))) for a, c in CATS.items()},
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
    kinds = _meta().label_kinds()
    assert eval_report.recompute(tmp_path / "predictions.jsonl", kinds) == rep
    assert eval_report.read_predictions(tmp_path / "predictions.jsonl") == preds

    p, r = rep["policy"]["overall"], rep["reference"]["overall"]
    # policy: easy exact; difficult predicts 'none' wrongly (FP) -> 1 wrong of 6 positions
    assert (p["format_valid_rate"], p["label_valid_rate"]) == (0.5, 1.0)
    assert p["hamming_loss"] == pytest.approx((0 + 1 / 3) / 2)
    assert p["accuracy"] == 0.5 and p["micro_f1"] == pytest.approx(1.0)  # 'none' unsupported
    assert p["mean_reward"] == 0.5 and p["mean_rewards"] == {"format": 0.5}
    # reference: both invalid -> complements, Hamming 1, no true positives
    assert (r["format_valid_rate"], r["label_valid_rate"], r["hamming_loss"]) == (0.0, 0.0, 1.0)
    assert r["micro_f1"] == 0.0 and r["macro_f1"] == 0.0 and r["invalid"] == 2
    assert list(rep["policy"]["easy"]["per_class"]) == CATS["easy"]
    assert rep["policy"]["easy"]["per_class"]["none"]["f1"] is None  # no gold support
    assert rep["kind"] == "multi" and rep["kinds"]["easy"]["categories"] == CATS["easy"]


def test_an_old_meta_without_kinds_is_read_as_multi_label(tmp_path):
    eval_report.write_all(tmp_path, _predictions(), _meta())
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["kinds"], meta["interval_method"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert eval_report.recompute(tmp_path / "predictions.jsonl")["kind"] == "multi"


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
    assert "| 1 | code | 1 | 1.000 | 1.000 | 1.000 | 0.000 | 0.000 | 0.000 |" in md
    assert "| 3 | none | 0 | – | – | – | – | – | – |" in md
    assert "complement of the gold vector" in md and "never skipped" in md
    assert "labels=" in md and "zero_division=0" in md
    assert "first 2 examples only" in md
    assert "### d1 (easy)" in md and "**policy**, predicted `[1, 0, 0]`" in md
    assert "**reference**, predicted invalid" in md


def test_summary_table_has_the_key_metrics_with_intervals():
    rep = eval_report.build_report(_predictions(), _meta().label_kinds(), resamples=50)
    lines = eval_report.summary_table(rep).splitlines()
    assert lines[0].split() == [
        "model", "n", "format_valid", "label_valid", "micro_f1", "macro_f1", "hamming_loss",
    ]  # fmt: skip
    assert lines[1].split()[:5] == ["policy", "2", "0.500", "1.000", "1.000"]
    assert lines[2].split() == ["reference", "2", "0.000", "0.000", "0.000", "[0.000,", "0.000]",
                                "0.000", "[0.000,", "0.000]", "1.000", "[1.000,", "1.000]"]  # fmt: skip


def test_one_model_and_unlabelled_rows(tmp_path):
    preds = [Prediction("d1", "easy", "policy", None, GOOD, [1, 0, 0])]
    rep = eval_report.write_all(tmp_path, preds, _meta(models={"policy": "m"}))
    o = rep["policy"]["overall"]
    assert (o["n"], o["n_labelled"], o["format_valid_rate"], o["micro_f1"]) == (1, 0, 1.0, None)
    assert o["mean_reward"] is None
    assert (tmp_path / "per_category_f1.png").read_bytes()[:4] == b"\x89PNG"
    assert "| micro_f1 | – |" in (tmp_path / "report.md").read_text()


# ----------------------------------------------------------------------------- statistics


def _many(models=("policy", "reference"), docs=12, policy_answer=None) -> list[Prediction]:
    """``docs`` documents × 2 aspects per model; the policy answers ``policy_answer`` to
    everything when given; every fourth reference completion is empty."""
    out = []
    for m in models:
        for d in range(docs):
            for aspect in CATS:
                gold = [d % 2, (d // 2) % 2, int(d % 3 == 0)]
                if m == "policy":
                    pred = policy_answer or gold
                else:
                    pred = [1 - gold[0], *gold[1:]] if d % 3 else gold
                empty = m != "policy" and d % 4 == 0
                text = "" if empty else f"<think>\n\n\n\nwhy</think>\n<label>{pred}</label>"
                prompt = f"Report {d} " + "word " * 200
                out.append(
                    Prediction(f"d{d}", aspect, m, gold, text, None if empty else pred,
                               float(pred == gold), prompt_excerpt=prompt)
                )  # fmt: skip
    return out


def test_report_json_holds_intervals_comparisons_and_tables(tmp_path):
    rep = eval_report.write_all(tmp_path, _many(), _meta())
    assert list(rep) == ["policy", "reference", *eval_report.TOP_LEVEL]
    assert eval_report.models(rep) == ["policy", "reference"]
    assert rep["bootstrap"] == {
        "resamples": 1000, "seed": 0, "unit": "document", "documents": 12, "level": 0.95,
        "method": "bca", "permutations": 10_000,
    }  # fmt: skip
    for model in ("policy", "reference"):
        for part in ("overall", "easy", "difficult"):
            ivs = rep[model][part]["intervals"]
            assert list(ivs) == list(eval_report.stats.headline("multi"))
            for key, iv in ivs.items():
                if key != "mean_reward" or rep[model][part][key] is not None:
                    assert iv[0] <= rep[model][part][key] <= iv[1], (model, part, key)
            assert set(rep[model][part]["per_class_intervals"]) == set(
                rep[model][part]["per_class"]
            )
    (c,) = rep["comparisons"]
    assert (c["policy"], c["reference"], c["examples"], c["documents"]) == (
        "policy", "reference", 24, 12,
    )  # fmt: skip
    diff = c["metric"]["accuracy"]
    p, r = rep["policy"]["overall"]["accuracy"], rep["reference"]["overall"]["accuracy"]
    assert diff["difference"] == pytest.approx(p - r) and diff["interval"][0] > 0
    # reference wrong where d % 3 (8 of 12 documents, both aspects) and empty where d % 4 == 0
    assert (c["mcnemar"]["b"], c["mcnemar"]["c"]) == (18, 0)
    assert c["permutation"]["p_value"] < 0.01 and c["permutation"]["loss"] == "hamming_loss"
    assert rep["degenerate"]["reference"]["empty_completions"] == 6
    assert rep["policy"]["easy"]["confusion"]["code"] == {"tp": 6, "fp": 0, "fn": 0, "tn": 6}
    assert rep["frequencies"]["gold"]["easy/code"] == 6  # odd documents
    # reference says code on even d with d % 3 (2, 10) and odd d with d % 3 == 0 (3, 9); 4 and
    # 8 would too, but their completions are empty: valid answers only
    assert rep["frequencies"]["reference"]["easy/code"] == 4
    codes = [w["code"] for w in rep["warnings"]]
    assert codes == ["small_test_set", "rare_categories", "detectable_difference"]  # none: 4 each


def test_recompute_uses_the_stored_seed_resamples_and_method(tmp_path):
    meta = _meta(bootstrap_seed=7, bootstrap_resamples=200, interval_method="percentile")
    rep = eval_report.write_all(tmp_path, _many(), meta)
    assert rep["bootstrap"]["seed"] == 7 and rep["bootstrap"]["resamples"] == 200
    assert rep["bootstrap"]["method"] == "percentile"
    assert eval_report.recompute(tmp_path / "predictions.jsonl") == rep
    assert json.loads((tmp_path / "report.json").read_text()) == rep
    other = eval_report.build_report(_many(), meta.label_kinds(), resamples=200, seed=8)
    assert other["reference"]["overall"]["intervals"] != rep["reference"]["overall"]["intervals"]


def test_policy_is_compared_with_every_other_model(tmp_path):
    models = {"policy": "p", "reference": "r", "runs/other/final": "o"}
    rep = eval_report.write_all(tmp_path, _many(tuple(models)), _meta(models=models))
    pairs = [(c["policy"], c["reference"]) for c in rep["comparisons"]]
    assert pairs == [("policy", "reference"), ("policy", "runs/other/final")]
    md = (tmp_path / "report.md").read_text()
    assert "| metric | policy − reference | 95% CI | policy − runs/other/final | 95% CI |" in md


def test_markdown_flags_a_rise_in_all_zero_answers(tmp_path):
    rep = eval_report.write_all(tmp_path, _many(policy_answer=[0, 0, 0]), _meta())
    assert rep["degenerate"]["policy"]["all_zero"] == 1.0
    assert rep["comparisons"][0]["degenerate_flags"] == ["all_zero", "constant"]
    md = (tmp_path / "report.md").read_text()
    ref = rep["degenerate"]["reference"]["all_zero"]
    assert (
        f"**flag**: policy's share of all-zero answers rises from {ref:.3f} (reference) to 1.000."
        in md
    )
    clean = eval_report.write_all(tmp_path / "clean", _many(), _meta())
    assert not clean["comparisons"][0]["degenerate_flags"]
    assert "**flag**" not in (tmp_path / "clean" / "report.md").read_text()


def test_markdown_is_compact(tmp_path):
    eval_report.write_all(tmp_path, _many(), _meta())
    md = (tmp_path / "report.md").read_text()
    assert "\n\n\n" not in md
    assert "- empty completions: 0 of 24 policy, 6 of 24 reference" in md
    examples = md.split("## Examples", 1)[1].split("\n## ", 1)[0]
    assert examples.count("\n### ") == eval_report.EXAMPLES
    assert "empty completion" not in examples  # answered examples are chosen first
    quote = next(line for line in examples.splitlines() if line.startswith("> Report"))
    assert len(quote) <= 2 + eval_report.EXCERPT_CHARS + 2 and quote.endswith(" …")
    assert "| accuracy | 1.000 | 0.250 |" in md and "| easy/code | 6 | 6 | 4 |" in md
    assert (
        md.index("## Warnings")
        < md.index("## Overall")
        < md.index("## Paired comparisons")
        < md.index("## Degenerate answers")
        < md.index("## Category frequencies")
        < md.index("## Examples")
    )


# ----------------------------------------------------------------------------- other kinds


def _single_predictions(docs: int = 40) -> tuple[list[Prediction], SingleLabel]:
    kind = SingleLabel(("background information", "method", "results comparison"))
    out = []
    for m, skill in (("policy", 4), ("reference", 2)):
        for d in range(docs):
            gold = d % 3
            pred = gold if d % 5 < skill else (None if d % 7 == 0 else (gold + 1) % 3)
            text = (
                f"<think>x</think><label>{'?' if pred is None else kind.categories[pred]}</label>"
            )
            out.append(Prediction(f"c{d}", "intent", m, gold, text, pred))
    return out, kind


def test_single_label_report_end_to_end(tmp_path):
    preds, kind = _single_predictions()
    meta = _meta(categories={"intent": list(kind.categories)}, kinds={"intent": wire(kind)})
    rep = eval_report.write_all(tmp_path, preds, meta)
    assert rep["kind"] == "single" and eval_report.recompute(tmp_path / "predictions.jsonl") == rep
    p = rep["policy"]["intent"]
    assert p["accuracy"] == pytest.approx(32 / 40)
    assert p["confusion"]["columns"] == [*kind.categories, "invalid"]
    assert sum(map(sum, p["confusion"]["matrix"])) == 40
    assert set(p["per_class"]) == set(kind.categories) and p["per_class"]["method"]["support"] == 13
    c = rep["comparisons"][0]
    assert c["permutation"] is None and c["mcnemar"]["b"] > c["mcnemar"]["c"]
    assert rep["degenerate"]["policy"]["all_zero"] is None
    md = (tmp_path / "report.md").read_text()
    assert (
        "| gold \\ answer | background information | method | results comparison | invalid |" in md
    )
    assert "gold: `background information`" in md
    assert "| macro_f1 |" in md and "| weighted_f1 |" in md


def test_dimensions_report_end_to_end(tmp_path):
    kind = DimensionLabel(("happiness", "anxiety", "trust"), ("low", "medium", "high"))
    preds = []
    for m in ("policy", "reference"):
        for d in range(30):
            gold = [d % 4, 0, (d // 2) % 2 * 3]
            pred = gold if (d % 3 or m == "policy") else [1, 0, 0]
            preds.append(Prediction(f"t{d}", "tweet", m, gold, "{}", None if d == 7 else pred))
    meta = _meta(categories={"tweet": list(kind.categories)}, kinds={"tweet": wire(kind)})
    rep = eval_report.write_all(tmp_path, preds, meta)
    assert (
        rep["kind"] == "dimensions" and eval_report.recompute(tmp_path / "predictions.jsonl") == rep
    )
    t = rep["policy"]["tweet"]
    assert t["intensity_accuracy"] == pytest.approx(87 / 90)  # one invalid row: 3 cells wrong
    assert t["confusion"]["rows"] == ["not present", "low", "medium", "high"]
    assert t["per_class"]["anxiety"]["f1"] is None  # never present in gold
    assert rep["comparisons"][0]["permutation"]["loss"] == "wrong_level_share"
    md = (tmp_path / "report.md").read_text()
    assert "| intensity_accuracy |" in md and "| fn_rate |" in md
    assert 'gold: `{"trust": "high"}`' in md or "gold: `{}`" in md


def test_reserved_model_labels_are_refused():
    preds = [Prediction("d1", "easy", "comparisons", [1, 0, 0], GOOD, [1, 0, 0])]
    with pytest.raises(ValueError, match="reserved"):
        eval_report.build_report(preds, _meta().label_kinds())


def test_prompt_excerpt_is_written_only_when_set(tmp_path):
    preds = _predictions()
    eval_report.write_predictions(tmp_path / "a.jsonl", preds)
    assert "prompt_excerpt" not in (tmp_path / "a.jsonl").read_text()
    preds[0].prompt_excerpt = "What was easy?"
    eval_report.write_predictions(tmp_path / "b.jsonl", preds)
    assert eval_report.read_predictions(tmp_path / "b.jsonl") == preds
    assert eval_report.excerpt("a  b\n\nc " * 100, 10) == "a b c a b …"


def test_test_set_sha256_is_reported_and_recomputed(tmp_path):
    sha = "ab" * 32
    rep = eval_report.write_all(tmp_path, _predictions(), _meta(test_set_sha256=sha))
    assert rep["test_set_sha256"] == sha and eval_report.models(rep) == ["policy", "reference"]
    assert eval_report.recompute(tmp_path / "predictions.jsonl") == rep
    assert f"- test set sha256: `{sha}`" in (tmp_path / "report.md").read_text()
    bare = eval_report.write_all(tmp_path / "none", _predictions(), _meta())
    assert bare["test_set_sha256"] is None  # another split, or an older eval: not stated
    assert "test set sha256" not in (tmp_path / "none" / "report.md").read_text()


def test_different_test_sets_are_refused_side_by_side():
    from llmscisci_cfg.errors import UserError
    from llmscisci_cfg.eval.evaluate import require_same_test_set

    a, b = "a" * 64, "b" * 64
    require_same_test_set("run runs/grpo", a, "reference run runs/sft", a)
    require_same_test_set("run runs/grpo", a, "reference run runs/old", None)  # unknown: no claim
    with pytest.raises(UserError) as caught:
        require_same_test_set("run runs/grpo", a, "reference run runs/sft", b)
    message = str(caught.value)
    assert "runs/grpo" in message and "runs/sft" in message and a in message and b in message


def test_the_plot_has_error_bars_and_says_when_there_is_nothing_to_see(tmp_path):
    assert eval_report.panel_note([0.0, 0.0]) == "every value is 0"
    assert eval_report.panel_note([]) == "no value defined (no labelled example)"
    assert eval_report.panel_note([0.0, 0.2]) is None
    rep = eval_report.write_all(tmp_path, _many(), _meta())
    part = rep["policy"]["easy"]
    value, lo, hi = eval_report._bar(part, "easy", "code")
    assert (value, [lo, hi]) == (
        part["per_class"]["code"]["f1"],
        part["per_class_intervals"]["code"]["f1"],
    )
    value, lo, hi = eval_report._bar(rep["reference"]["overall"], "overall", "micro_f1")
    assert lo <= value <= hi and [lo, hi] == rep["reference"]["overall"]["intervals"]["micro_f1"]
    wrong = [p for p in _predictions() if p.model == "reference"]  # every answer invalid
    eval_report.write_all(tmp_path / "zero", wrong, _meta(models={"reference": "r"}))
    assert (tmp_path / "zero" / "per_category_f1.png").read_bytes()[:4] == b"\x89PNG"


def test_a_report_with_methods_facts_opens_with_the_paragraph_and_ends_with_the_prompts(tmp_path):
    facts = {
        "task": {"name": "t", "description": "", "ref": "t.yaml", "sha256": "ab" * 32,
                 "answer": "multi", "aspects": {a: {"categories": c} for a, c in CATS.items()},
                 "overrides": []},
        "prompts": {"system_template": "Be brief.", "user_template": "{{ text }}",
                    "system_sha256": "cd" * 32, "user_sha256": "ef" * 32,
                    "rendered": {"easy": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "[section text]"}]}},
        "models": {"policy": {"what": "m", "chat_template": {"name": "tiny", "sha256": "12" * 32},
                              "identity": {"kind": "hub", "id": "org/model", "revision": "main",
                                           "commit": "34" * 20}}},
        "decoding": {"backend": "transformers", "temperature": 0.0, "max_new_tokens": 8,
                     "batch_size": 4, "structured": False},
        "data": {"file": "d.csv", "sha256": "56" * 32, "rows": 10, "examples": 20,
                 "splits": {"train": 16, "test": 4}, "documents": {"train": 8, "test": 2},
                 "dropped": {}, "cleaning": {}, "length_filter": {}, "evaluated_split": "test",
                 "limit": None, "test_set_sha256": None},
        "split": {"rule": "by document", "settings": {"test_fraction": 0.2}, "seed": 3,
                  "seed_from": "train.seed"},
        "training": None,
        "tool": {"version": "0.1.0", "commit": "78" * 20, "dirty": False},
        "versions": {"python": "3.11"},
    }  # fmt: skip
    meta = _meta(models={"policy": "m"}, methods=facts)
    preds = [p for p in _predictions() if p.model == "policy"]
    rep = eval_report.write_all(tmp_path, preds, meta)
    assert rep["methods"] == facts and eval_report.recompute(tmp_path / "predictions.jsonl") == rep
    md = (tmp_path / "report.md").read_text()
    lines = md.splitlines()
    assert lines[2] == "## Methods"
    for fact in ("Task: t (task file t.yaml, sha256 abababababab)", "policy: org/model (revision main, commit 343434343434)",
                 "0.2 of the documents held out, seed 3 (train.seed)", "free text (no constrained decoding)",
                 "llmscisci 0.1.0 (commit 787878787878)"):  # fmt: skip
        assert fact in lines[4], fact
    assert (
        md.rstrip().endswith("```")
        and "## Appendix: prompts" in md
        and "As rendered for easy" in md
    )
