"""Label constraints in the task file: the YAML form, its errors, the resolved rule, parsing."""

from __future__ import annotations

import itertools

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import TaskOverride
from llmscisci_cfg.task.answer import parse_completion
from llmscisci_cfg.task.constraints import LabelRule, per_row
from llmscisci_cfg.task.spec import load_task
from tests.data_helpers import constrained_task

EXCLUSIVE_5 = LabelRule(5, (4,), 1, ("5",))


def _answer(label: str) -> str:
    return f"<think>x</think>\n<label>\n{label}\n</label>"


def test_the_reproducibility_task_decodes_what_its_prompt_asks(task):
    """Category 5 ("none of the others") alone, at least one category: on every door."""
    assert task.constraints is not None
    assert all(task.label_rule(a) == EXCLUSIVE_5 for a in task.aspects)
    assert "none of the others" not in task.system_prompt or True  # the prompt says it


def test_off_unless_a_task_declares_them(tmp_path):
    plain = load_task(str(constrained_task(tmp_path, "")), tmp_path)
    assert plain.constraints is None and plain.label_rules() is None
    assert all(plain.label_rule(a) is None for a in plain.aspects)


@pytest.mark.parametrize(
    ("label", "allowed"),
    [
        ([0, 0, 0, 0, 0], False),  # the pinned cases of issue 14
        ([1, 0, 0, 0, 1], False),
        ([0, 0, 0, 0, 1], True),
        ([1, 0, 1, 0, 0], True),
        ([1, 1, 1, 1, 0], True),
        ([1, 1, 1, 1, 1], False),
    ],
)
def test_pinned_rule(label, allowed):
    assert EXCLUSIVE_5.allows(label) is allowed
    assert (EXCLUSIVE_5.violation(label) is None) is allowed


def test_rule_counts_every_label():
    assert len(EXCLUSIVE_5.labels()) == 16  # 15 non-empty subsets of 1-4, plus [0, 0, 0, 0, 1]
    assert len(LabelRule(5, (), 2).labels()) == 32 - 1 - 5
    assert len(LabelRule(5).labels()) == 32
    assert EXCLUSIVE_5.violation([0, 0, 0, 0, 0]) == (
        "0 categories set, at least 1 required (constraints.min_positive)"
    )
    assert EXCLUSIVE_5.describe() == "category 5 alone, at least 1 category set"


def test_task_file_constraints_resolve_per_aspect(tmp_path):
    task = load_task(str(constrained_task(tmp_path)), tmp_path)
    rules = task.label_rules()
    assert rules == {"easy": EXCLUSIVE_5, "difficult": EXCLUSIVE_5}
    assert rules["easy"].codes == ("5",)


def test_codes_name_categories_by_the_task_numbering(tmp_path):
    """Code 1 of the alternative difficult numbering is the third category (position 2)."""
    path = constrained_task(tmp_path, "constraints: {exclusive: ['1']}\n")
    alternative = {
        "1": "Unclear notation or documentation in the codebase",
        "2": "Missing Algorithm step or Architecture details",
        "3": "Insufficient Math/Equations",
        "4": "Missing nuance details",
        "5": "Cannot extract concrete factors that made it difficult",
    }
    task = load_task(str(path), tmp_path, TaskOverride(codes={"difficult": alternative}))
    assert task.label_rule("difficult").exclusive == (2,)
    assert task.label_rule("easy").exclusive == (0,)


def test_an_aspect_replaces_the_task_constraints(tmp_path):
    path = constrained_task(tmp_path)
    text = path.read_text().replace(
        "    text_column: easy\n", "    text_column: easy\n    constraints: {min_positive: 2}\n"
    )
    path.write_text(text)
    task = load_task(str(path), tmp_path)
    assert task.label_rule("easy") == LabelRule(5, (), 2)
    assert task.label_rule("difficult") == EXCLUSIVE_5


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (
            "constraints: {exclusive: [7]}",
            "constraints.exclusive.0: code 7 names no category; codes: 1, 2, 3, 4, 5 (aspect easy)",
        ),
        ("constraints: {exclusive: [true]}", "constraints.exclusive: True is not a category code"),
        ("constraints: {exclusive: [0]}", "0 is not a category code"),
        ("constraints: {exclusive: [5, '5']}", "code 5 is listed twice"),
        (
            "constraints: {min_positive: 6}",
            "constraints.min_positive: 6 is more than the 5 categories",
        ),
        (
            "constraints: {min_positive: -1}",
            "constraints.min_positive: Input should be greater than or equal to 0",
        ),
        ("constraints: {exclusive: [5], min_positive: 2}", "smallest fix: min_positive: 1"),
        ("constraints: {exclusiv: [5]}", "constraints.exclusiv: unknown key"),
    ],
)
def test_errors_name_the_task_file_line_and_key(tmp_path, line, needle):
    path = constrained_task(tmp_path, line + "\n")
    with pytest.raises(UserError) as info:
        load_task(str(path), tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and needle in message
    last_line = len(path.read_text().splitlines())
    assert f"{path}:{last_line}:" in message  # the line of the constraints


def test_an_override_that_breaks_the_constraints_is_named(tmp_path):
    path = constrained_task(tmp_path)
    override = TaskOverride(categories={"easy": ["a", "b", "c"]}, codes={"easy": {"1": "a"}})
    with pytest.raises(UserError, match=r"data.task_overrides: constraints.exclusive.0: code 5"):
        load_task(str(path), tmp_path, override)


def test_parse_completion_under_a_rule():
    for bits in itertools.product((0, 1), repeat=5):
        text = _answer("[" + ", ".join(map(str, bits)) + "]")
        assert parse_completion(text, 5) == (True, list(bits))  # unchanged without a rule
        expected = list(bits) if EXCLUSIVE_5.allows(bits) else None
        assert parse_completion(text, 5, EXCLUSIVE_5) == (True, expected)
    assert parse_completion(_answer("[0, 0, 0, 0"), 5, EXCLUSIVE_5) == (True, None)


def test_per_row_rules():
    rules = {"easy": EXCLUSIVE_5, "difficult": None}
    assert per_row(rules, ["difficult", "easy", 3], 3) == [None, EXCLUSIVE_5, None]
    assert per_row(None, None, 2) == [None, None]
    assert per_row({"easy": EXCLUSIVE_5, "difficult": EXCLUSIVE_5}, None, 1) == [EXCLUSIVE_5]
    assert per_row(rules, None, 1) == [None]  # rules that differ need the aspect column
