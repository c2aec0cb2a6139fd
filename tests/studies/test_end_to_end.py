"""Each study's tiny recipes, end to end on the built-in tiny model: zero- and few-shot
`predict` through structured output (every answer parses and keeps the grammar), SFT then
`eval`, GRPO with the rewards every kind shares (format, label_valid, correct), and `predict`
with a trained run as the model.

One single-label study (citation intent) and the dimensions study (flourishing) run in the
default suite; the second single-label study (citation function) runs its zero-shot recipe
there and the rest under ``-m slow``; few-shot runs the dimensions study by default. Runs are
tiny (2 SFT steps of 2 examples, 1 GRPO step of 2 completions, 2 rows).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmscisci_cfg.task.grammar import Constraint, check
from llmscisci_cfg.task.kinds import read_answer
from llmscisci_cfg.task.spec import load_task
from tests.studies.conftest import FLOURISHING, FUNCTION, INTENT, Study, sample_rows

DEFAULT = [INTENT, FLOURISHING]
EVERY = [*DEFAULT, pytest.param(FUNCTION, marks=pytest.mark.slow)]
#: Few-shot: the dimensions study by default (its shots and short prompt share the tiny
#: context with the grammar's reserve), the single-label ones under -m slow.
FEW_SHOT = [
    FLOURISHING,
    pytest.param(INTENT, marks=pytest.mark.slow),
    pytest.param(FUNCTION, marks=pytest.mark.slow),
]


def _kind(study: Study):
    return load_task(f"builtin:{study.task}", Path(".")).label_kind(study.aspect)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_answers_keep_the_grammar(study: Study, rows: list[dict], limit: int) -> None:
    """Every non-empty row was answered; its raw answer is in the grammar and its ``_pred`` is
    the kind's public form of what the raw answer says; an empty row says why it has none."""
    kind = _kind(study)
    constraint = Constraint.answer(kind)
    source = sample_rows(study)[:limit]
    assert [r[study.id_column] for r in rows] == [r[study.id_column] for r in source]
    answered = 0
    for row in rows:
        raw, pred = row[f"{study.aspect}_raw"], row[f"{study.aspect}_pred"]
        if not row[study.text_column].strip():
            assert row[f"{study.aspect}_reason"] == "empty_text" and pred in ("", None)
            continue
        assert check(constraint, raw), raw
        value = read_answer(raw, kind).value
        assert value is not None and pred == kind.public(value), (raw, pred)
        assert row[f"{study.aspect}_reason"] == ""
        answered += 1
    assert answered == sum(bool(r[study.text_column].strip()) for r in source) > 0


@pytest.mark.parametrize("study", [*DEFAULT, FUNCTION], ids=lambda s: s.task)
def test_zero_shot_predict_answers_every_row_in_the_grammar(invoke, tmp_path, study):
    out = tmp_path / "labels.jsonl"
    result = invoke("predict", study.recipe("label_tiny"), "--output", out, "--limit", 2)
    assert result.exit_code == 0, result.output
    assert_answers_keep_the_grammar(study, _jsonl(out), 2)
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["valid_rate"] == 1.0 and report["task"]["name"] == study.task


@pytest.mark.parametrize("study", FEW_SHOT, ids=lambda s: s.task)
def test_few_shot_predict_shows_other_rows_and_keeps_the_grammar(invoke, tmp_path, study):
    out = tmp_path / "labels.jsonl"
    result = invoke("predict", study.recipe("label_few_shot_tiny"), "--output", out, "--limit", 2)
    assert result.exit_code == 0, result.output
    rows = _jsonl(out)
    assert_answers_keep_the_grammar(study, rows, 2)
    labelled = {r[study.id_column] for r in sample_rows(study) if r[study.text_column].strip()}
    from llmscisci_cfg.recipe.loader import load_recipe

    shots = load_recipe(study.recipe("label_few_shot_tiny")).method.shots
    for row in rows:
        if row[study.text_column].strip():
            chosen = row[f"{study.aspect}_shots"]
            assert len(chosen) == shots and len(set(chosen)) == shots
            assert row[study.id_column] not in chosen and set(chosen) <= labelled


@pytest.mark.parametrize("study", EVERY, ids=lambda s: s.task)
def test_sft_then_eval_answers_in_the_grammar(invoke, trained, tmp_path, study):
    run_dir = trained(study)
    result = invoke("eval", run_dir, "--limit", 2, "--output-dir", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    overall = report["policy"]["overall"]
    assert overall["n"] == 2 and overall["format_valid_rate"] == overall["label_valid_rate"] == 1.0
    kind = _kind(study)
    predictions = _jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert len(predictions) == 2
    for p in predictions:
        assert p["aspect"] == study.aspect and check(Constraint.answer(kind), p["completion"])
        assert read_answer(p["completion"], kind).value is not None


@pytest.mark.parametrize("study", EVERY, ids=lambda s: s.task)
def test_grpo_scores_every_kind_with_format_label_valid_and_correct(
    invoke, trained, tmp_path, study
):
    """One GRPO step from the SFT run (one prompt, 2 completions of at most 24 tokens): the
    three rewards are logged, in range, and weighted 1, 1, 2 into the reward."""
    run_dir = tmp_path / "grpo"
    result = invoke(
        "run", study.recipe("grpo_tiny"), "--output-dir", run_dir,
        "--set", f"model.name_or_path={trained(study) / 'final'}",
        "--set", "train.max_steps=1", "--set", "train.save_steps=1",
        "--set", "train.per_device_batch_size=2", "--set", "method.num_generations=2",
        "--set", "method.max_completion_length=24",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    step = next(r for r in _jsonl(run_dir / "metrics.jsonl") if "reward" in r)
    means = {k.split("/")[1]: v for k, v in step.items() if k.startswith("rewards/") and k.endswith("/mean")}  # fmt: skip
    assert set(means) == {"format", "label_valid", "correct"}
    assert 0 <= means["format"] <= 1 and 0 <= means["correct"] <= 1
    assert means["label_valid"] in (0.0, 0.25, 0.5)  # 0.5 each, 2 completions
    assert means["label_valid"] <= means["format"] / 2 + 1e-9  # valid needs the format
    weighted = means["format"] + means["label_valid"] + 2 * means["correct"]
    assert step["reward"] == pytest.approx(weighted)


def test_a_trained_run_labels_a_table(invoke, trained, tmp_path):
    """`predict` with a run directory as the model: the README's path from SFT to the
    published test sets."""
    out = tmp_path / "labels.jsonl"
    run_dir = trained(INTENT)
    result = invoke(
        "predict", INTENT.recipe("label_tiny"), "--set", f"model.name_or_path={run_dir}",
        "--output", out, "--limit", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_answers_keep_the_grammar(INTENT, _jsonl(out), 2)
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["model"] == str(run_dir)
