"""Gold labels under the task's label constraints: a clear error naming file, row and column,
or a counted drop; the shipped task (no constraints) accepts them as before."""

from __future__ import annotations

import pytest

from llmscisci_cfg.data.examples import collect
from llmscisci_cfg.data.sources import load_source
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.task.constraints import LabelRule
from llmscisci_cfg.task.kinds import MultiLabel
from llmscisci_cfg.train.methods.dpo import choose_pair
from tests.data_helpers import LABELS, answer, constrained_task, make_job, reports, write_csv

FIELDS = ["doi", "easy", "difficult", "y_easy_gpt4", "y_diff_gpt4"]


def _rows():
    rows = reports(3)
    rows[1]["y_easy_gpt4"] = "[0, 0, 0, 0, 0]"  # no category: breaks min_positive
    rows[2]["y_diff_gpt4"] = "[1, 0, 0, 0, 1]"  # category 5 not alone: breaks exclusive
    return rows


def _collect(job):
    return collect(load_source(job), job)


def test_without_constraints_such_gold_labels_are_valid(tmp_path):
    constrained_task(tmp_path, "", "plain.yaml")
    write_csv(tmp_path / "r.csv", _rows(), FIELDS)
    job = make_job(tmp_path, "r.csv", columns={"label": LABELS}, task="plain.yaml")
    examples, dropped = _collect(job)
    assert len(examples) == 6 and not dropped
    assert [e.gold for e in examples][2] == [0, 0, 0, 0, 0]


def test_a_gold_label_that_breaks_them_names_file_row_and_column(tmp_path):
    constrained_task(tmp_path)
    write_csv(tmp_path / "r.csv", _rows(), FIELDS)
    job = make_job(tmp_path, "r.csv", columns={"label": LABELS}, task="strict.yaml")
    with pytest.raises(UserError) as info:
        _collect(job)
    assert str(info.value) == (
        f"{tmp_path / 'r.csv'}:3: id '10.1/doc.001': column 'y_easy_gpt4' "
        "(data.columns.label.easy): [0, 0, 0, 0, 0] breaks the task's label constraints: "
        "0 categories set, at least 1 required (constraints.min_positive); fix the label, or "
        "set data.on_bad_label: drop to skip such rows"
    )


def test_with_drop_they_are_counted_as_bad_labels(tmp_path):
    constrained_task(tmp_path)
    write_csv(tmp_path / "r.csv", _rows(), FIELDS)
    job = make_job(
        tmp_path, "r.csv", columns={"label": LABELS}, task="strict.yaml", on_bad_label="drop"
    )
    examples, dropped = _collect(job)
    assert dict(dropped) == {"bad_label": 2} and len(examples) == 4
    assert all(job.task.label_rule(e.aspect).allows(e.gold) for e in examples)


def test_dpo_pairs_treat_an_answer_that_breaks_them_as_invalid():
    answers = (answer("[1, 0, 0, 0, 1]"), answer("[0, 1, 0, 0, 0]"))
    gold = [1, 0, 0, 0, 0]
    plain, strict = MultiLabel.plain(5), MultiLabel.plain(5, LabelRule(5, (4,), 1))
    assert choose_pair(answers, gold, plain, "hamming_to_gold") == answers  # 0.8 beats 0.6
    assert choose_pair(answers, gold, strict, "hamming_to_gold") == answers[::-1]  # -1 now
