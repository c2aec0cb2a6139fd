"""The declarative task: the shipped repro_effort file, prompts, codes, overrides and their errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import TaskOverride
from llmscisci_cfg.rewards.builtin import format_match
from llmscisci_cfg.task.spec import load_task

EASY = [
    "Availability of Code",
    "Supporting Artifacts",
    "Readability of Full Text",
    "Experimental Setup or Environment",
    "Cannot extract concrete factors that eased reproducibility",
]
DIFFICULT = [
    "Missing Algorithm step or Architecture details",
    "Missing nuance details",
    "Unclear notation or documentation in the codebase",
    "Insufficient Math/Equations",
    "Cannot extract concrete factors that made it difficult",
]
ALTERNATIVE_CODES = {
    "1": "Unclear notation or documentation in the codebase",
    "2": "Missing Algorithm step or Architecture details",
    "3": "Insufficient Math/Equations",
    "4": "Missing nuance details",
    "5": "Cannot extract concrete factors that made it difficult",
}


def test_categories_in_design_order(task):
    assert list(task.aspects) == ["easy", "difficult"]
    assert task.aspects["easy"].categories == EASY
    assert task.aspects["difficult"].categories == DIFFICULT
    assert task.aspects["easy"].text_column == "easy"
    assert task.aspects["difficult"].text_column == "difficult"


def test_rescience_codes_follow_category_order(task):
    assert task.aspects["easy"].code_index() == {str(i + 1): i for i in range(5)}
    assert task.aspects["difficult"].code_index() == {str(i + 1): i for i in range(5)}


def test_alternative_difficult_numbering_via_override():
    task = load_task(
        "builtin:repro_effort", Path("."), TaskOverride(codes={"difficult": ALTERNATIVE_CODES})
    )
    assert task.aspects["difficult"].code_index() == {"1": 2, "2": 0, "3": 3, "4": 1, "5": 4}
    assert task.aspects["easy"].code_index()["3"] == 2  # untouched


def test_user_prompt_numbers_categories_and_wraps_text(task):
    system, user = task.messages("difficult", "  The math was thin.\n")
    assert system["role"] == "system" and user["role"] == "user"
    assert "<think>" in system["content"] and "<label>" in system["content"]
    assert "[1, 0, 1, 0, 0]" in system["content"]
    for i, name in enumerate(DIFFICULT, start=1):
        assert f"\n{i}. {name}\n" in user["content"]
    assert user["content"].endswith("<text>\nThe math was thin.\n</text>")
    assert '"What was difficult"' in user["content"]


def test_text_is_data_not_template(task):
    _, user = task.messages("easy", "{{ 7 * 7 }} {% raw %} </text>")
    assert "{{ 7 * 7 }} {% raw %} </text>" in user["content"]


def test_completion_format_matches_rewards(task):
    out = task.completion("  The code was public.  ", [1, 0, 0, 0, 0])
    assert out == "<think>\nThe code was public.\n</think>\n<label>\n[1, 0, 0, 0, 0]\n</label>"
    assert format_match(out)
    assert task.completion("", [0, 0, 0, 0, 1]).startswith("<think>\n\n</think>")


def test_reordered_categories_keep_codes_by_name():
    reordered = list(reversed(EASY))
    task = load_task(
        "builtin:repro_effort", Path("."), TaskOverride(categories={"easy": reordered})
    )
    assert task.aspects["easy"].categories == reordered
    assert task.aspects["easy"].code_index()["1"] == 4  # "Availability of Code" is now last


def test_prompt_override(task):
    o = TaskOverride(user_prompt="Aspect {{ aspect }} ({{ n }}): {{ text }}")
    t = load_task("builtin:repro_effort", Path("."), o)
    assert t.messages("easy", "x")[1]["content"] == "Aspect easy (5): x"
    assert t.system_prompt == task.system_prompt


def test_task_file_relative_to_base_dir(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mine.yaml").write_text(
        "name: mine\naspects:\n  abstract:\n    text_column: abstract\n    title: Abstract\n"
        "    question: Is it about X?\n    categories: [relevant, irrelevant]\n"
        "system_prompt: Answer with <think> and <label>.\nuser_prompt: '{{ text }}'\n"
    )
    t = load_task("tasks/mine.yaml", tmp_path)
    assert t.aspects["abstract"].code_index() == {"1": 0, "2": 1}
    assert t.messages("abstract", "hello")[1]["content"] == "hello"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (
            TaskOverride(user_prompt="{{ txt }}"),
            "data.task_overrides.user_prompt: 'txt' is undefined",
        ),
        (
            TaskOverride(system_prompt="{% for %}"),
            "data.task_overrides.system_prompt: Jinja syntax error",
        ),
        (TaskOverride(user_prompt="no section"), "never shows the section"),
        (
            TaskOverride(codes={"easy": {"1": "Availability of Cod"}}),
            "did you mean 'Availability of Code'",
        ),
        (TaskOverride(codes={"easy": {"x": "Availability of Code"}}), "positive integer"),
        (
            TaskOverride(categories={"hard": ["a", "b"]}),
            "data.task_overrides.categories.hard: no such aspect",
        ),
        (TaskOverride(categories={"easy": ["a", "b"]}), "also give data.task_overrides.codes.easy"),
        (
            TaskOverride(categories={"easy": ["a", "a"]}, codes={"easy": {"1": "a"}}),
            "categories repeat: a",
        ),
        (
            TaskOverride(user_prompt="{{ text.__class__.__mro__ }}"),
            "data.task_overrides.user_prompt",
        ),
    ],
)
def test_override_errors(override, needle):
    with pytest.raises(UserError) as info:
        load_task("builtin:repro_effort", Path("."), override)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: t\n", ":1:1: aspects: Field required"),
        (
            "name: t\naspects: {}\nsystem_prompt: s\nuser_prompt: '{{ text }}'\nextra: 1\n",
            ":5:8: extra: unknown key",
        ),
        (
            "name: t\naspects:\n  a: {text_column: a, title: A, question: Q, categories: [x, y]}\n"
            "system_prompt: s\nuser_prompt: '{{ text }}'\nresponse_template: '{{ label }}'\n",
            ":6:20: response_template: renders",
        ),
        ("- a list\n", "a task file is a YAML mapping"),
        (
            "name: t\naspects:\n  a: {text_column: a, title: A, question: Q, categories: [yes, no]}\n"
            "system_prompt: s\nuser_prompt: '{{ text }}'\n",
            ":3:59: aspects.a.categories.0: Input should be a valid string (got True; quote it in YAML)",
        ),
    ],
)
def test_task_file_errors_name_file_and_line(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_task("bad.yaml", tmp_path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_unknown_builtin_and_missing_file(tmp_path):
    with pytest.raises(
        UserError,
        match=r"no such built-in asset \(did you mean .*\?\); available: .*tasks/repro_effort.yaml",
    ):
        load_task("builtin:nope", tmp_path)
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'x.yaml'}: no such file")):
        load_task("x.yaml", tmp_path)


def test_import_light():
    code = "import sys, llmscisci_cfg.task.spec; print(sorted(m for m in ('torch','datasets','transformers') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"
