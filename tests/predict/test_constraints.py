"""`predict` under the task's label constraints: the grammar keeps them, and an answer that
breaks them (from a backend that cannot constrain it) is invalid."""

from __future__ import annotations

from pathlib import Path

from llmscisci_cfg.models.generate import Completion
from llmscisci_cfg.predict.items import Item, read
from llmscisci_cfg.task.labels import parse_onehot
from llmscisci_cfg.task.spec import load_task
from tests.data_helpers import constrained_task

LABEL = "builtin:quickstart/label_tiny"
FAST = ("--set", "generation.max_new_tokens=40", "--set", "method.max_prompt_tokens=256")


def test_structured_labels_keep_the_constraints(cli, tmp_path):
    from llmscisci_cfg.data.table import read_table

    task = constrained_task(tmp_path)
    out = tmp_path / "labels.csv"
    sets = ("--set", f"data.task={task}")
    result = cli("predict", LABEL, "--output", out, "--limit", "6", *FAST, *sets)
    assert result.exit_code == 0, result.output
    rule = load_task(str(task), tmp_path).label_rule("easy")
    rows = read_table(out).rows
    preds = [parse_onehot(r[f"{a}_pred"], 5) for r in rows for a in ("easy", "difficult")]
    valid = [p for p in preds if p is not None]
    assert len(valid) >= 10 and all(rule.allows(p) for p in valid)  # few sample sections are empty


def test_an_answer_that_breaks_them_is_invalid(tmp_path):
    strict = load_task("builtin:repro_effort", Path("."))  # its constraints are on
    plain = load_task(str(constrained_task(tmp_path, "", "plain.yaml")), tmp_path)
    text = "<think>x</think>\n<label>\n[0, 0, 0, 0, 0]\n</label>"
    answer = [[Completion(text, 1, 1, "stop")]]
    item = Item(row=0, aspect="easy", id="d")
    assert read(plain, item, answer).valid is True
    outcome = read(strict, item, answer)
    assert outcome.valid is False and outcome.pred is None and outcome.raw == text
