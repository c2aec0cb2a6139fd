"""``rewards list`` and ``rewards test`` through click, on a local group (no dependency on cli.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from llmscisci_cfg.cli.rewards import register

REPO = Path(__file__).resolve().parents[2]
GRPO_TINY = REPO / "recipes" / "quickstart" / "grpo_tiny.yaml"
GRPO_QWEN = REPO / "recipes" / "repro_effort" / "grpo_qwen2.5.yaml"

GOOD = "<think>code was public</think>\n<label>[1, 0, 1, 0, 0]</label>"
ROWS = [
    {"completion": GOOD, "gold": [1, 0, 1, 0, 0]},
    {"completion": "<think>x</think><label>[1, 0, 0, 0, 0]</label>", "gold": "[1, 0, 1, 0, 0]"},
    {"completion": [{"role": "assistant", "content": GOOD}], "gold": "1, 3"},
    {"completion": GOOD, "gold": [1, 0, 1, 0, 0]},
]


@pytest.fixture
def invoke():
    group = click.Group()
    register(group)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(group, [str(a) for a in args])

    return run


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_rewards_list(invoke):
    result = invoke("rewards", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = [line.split()[0] for line in lines[0:14:2]]
    assert names == [
        "format",
        "label_valid",
        "stepwise_label",
        "hamming",
        "correct",
        "cot_length",
        "cond_cot_stepwise",
    ]
    assert lines[0] == "format             1 when <think>…</think> <label>…</label> matches"
    assert lines[7] == ("                   range: 0 to 1; params: constrained=False; reads: gold")
    assert lines[13] == (
        "                   range: 0 or more; params: alpha=0.1, threshold=1.0, constrained=False"
    )


def test_rewards_test_json(invoke, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", ROWS)
    result = invoke(
        "rewards",
        "test",
        "--completions",
        data,
        "--reward",
        "format",
        "--reward",
        "hamming",
        "--json",
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"index": 0, "rewards": {"format": 1.0, "hamming": 1.0}, "total": 2.0},
        {"index": 1, "rewards": {"format": 1.0, "hamming": 0.8}, "total": 1.8},
        {"index": 2, "rewards": {"format": 1.0, "hamming": 1.0}, "total": 2.0},
        {"index": 3, "rewards": {"format": 1.0, "hamming": 1.0}, "total": 2.0},
    ]


def test_rewards_test_table_with_zero_variance_warning(invoke, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", ROWS)
    result = invoke(
        "rewards",
        "test",
        "--completions",
        data,
        "--reward",
        "format",
        "--reward",
        "hamming",
        "--group-size",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "note: default task builtin:repro_effort, default parameters; categories: 5",
        "     #  format  hamming   total",
        "weight  1.0000   1.0000",
        "     0  1.0000   1.0000  2.0000",
        "     1  1.0000   0.8000  1.8000",
        "     2  1.0000   1.0000  2.0000",
        "     3  1.0000   1.0000  2.0000",
        "-" * 31,
        "  mean  1.0000   0.9500  1.9500",
        "",
        "group  completions  mean total  std total",
        "    0          0-1      1.9000     0.1414",
        "    1          2-3      2.0000     0.0000  <- zero variance",
        "warning: 1 of 2 groups have zero reward variance; GRPO's advantage is 0 for them and it learns nothing from them",
    ]


def test_rewards_test_all_builtins_by_default(invoke, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", ROWS[:2])
    result = invoke("rewards", "test", "--completions", data, "--json")
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout.splitlines()[0])
    assert list(first["rewards"]) == [
        "format",
        "label_valid",
        "stepwise_label",
        "hamming",
        "correct",
        "cot_length",
        "cond_cot_stepwise",
    ]
    assert first["rewards"]["label_valid"] == 0.5 and first["rewards"]["stepwise_label"] == 1.0
    cot = first["rewards"]["cot_length"]
    assert cot > 0 and first["rewards"]["cond_cot_stepwise"] == pytest.approx(1.0 + 0.1 * cot)
    assert first["total"] == pytest.approx(sum(first["rewards"].values()))
    assert "cot_length tokens counted with" in result.stderr


def test_rewards_test_with_the_shipped_grpo_recipes(invoke, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", ROWS)
    result = invoke("rewards", "test", GRPO_TINY, "--completions", data, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rewards"] for r in rows[:2]] == [
        {"format": 1.0, "stepwise_label": 1.0, "hamming": 1.0},
        {"format": 1.0, "stepwise_label": 1.0, "hamming": 0.8},
    ]
    table = invoke("rewards", "test", GRPO_TINY, "--completions", data)
    assert (
        "    0          0-3      2.9500     0.1000" in table.stdout
    )  # num_generations 4: one group
    qwen = invoke(
        "rewards", "test", GRPO_QWEN, "--completions", data, "--json", "--group-size", "4"
    )
    assert qwen.exit_code == 0, qwen.output
    first = json.loads(qwen.stdout.splitlines()[0])
    assert list(first["rewards"]) == ["format", "label_valid", "cond_cot_stepwise", "hamming"]
    # weights 1, 1, 1, 2 (hamming counts double)
    expected = 1.0 + 0.5 + first["rewards"]["cond_cot_stepwise"] + 2 * 1.0
    assert first["total"] == pytest.approx(expected)
    assert first["rewards"]["cond_cot_stepwise"] > 1.0  # stepwise 1 + 0.1 x think tokens
    assert "is neither a local directory nor in the Hugging Face cache here" in qwen.stderr


def test_rewards_test_recipe_with_plugin_file(invoke, tmp_path):
    (tmp_path / "my_rewards.py").write_text(
        "def brevity(completions, max_chars=100, **kwargs):\n"
        "    return [1.0 if len(c) <= max_chars else 0.0 for c in completions]\n"
    )
    source = GRPO_TINY.read_text()
    head, _, tail = source.partition("rewards:\n")
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text(
        head
        + textwrap.dedent(
            """\
            rewards:
              - name: format
              - name: my_rewards.py:brevity
                params: {max_chars: 70}
                weight: 0.5
                alias: short
            """
        )
        + tail[tail.index("\ntrain:") :]
    )
    data = write_jsonl(
        tmp_path / "c.jsonl", [{"completion": GOOD}, {"completion": GOOD + "x" * 20}]
    )
    result = invoke("rewards", "test", recipe, "--completions", data, "--json", "--group-size", "2")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"index": 0, "rewards": {"format": 1.0, "short": 1.0}, "total": 1.5},
        {"index": 1, "rewards": {"format": 1.0, "short": 0.0}, "total": 1.0},
    ]
    bad = recipe.read_text().replace("max_chars: 70", "max_char: 70")
    recipe.write_text(bad)
    wrong = invoke("rewards", "test", recipe, "--completions", data)
    assert wrong.exit_code == 2
    assert wrong.stderr == (
        f"error: {recipe}: rewards.1.params.max_char: my_rewards.py:brevity: the function has no "
        "parameter 'max_char' (did you mean 'max_chars'?); its parameters: completions, max_chars\n"
    )
    recipe.write_text(bad.replace("max_char: 70", "max_chars: 70"))
    only = invoke(
        "rewards",
        "test",
        recipe,
        "--completions",
        data,
        "--json",
        "--reward",
        "short",
        "--group-size",
        "1",
    )
    assert [json.loads(line)["rewards"] for line in only.stdout.splitlines()] == [
        {"short": 1.0},
        {"short": 0.0},
    ]


ERRORS = [
    (
        ['{"completion": "a"}', "", '{"completion": 1,}'],
        [],
        "c.jsonl:3: not valid JSON (Expecting property name enclosed in double quotes, column 18)",
    ),
    (["[1, 2]"], [], "c.jsonl:1: expected a JSON object, got list"),
    (
        ['{"completion": "a"}', '{"text": "a", "gold": 1}'],
        [],
        "c.jsonl:2: missing key 'completion' (has text, gold)",
    ),
    ([], [], "c.jsonl: no completions (the file is empty)"),
    (
        ['{"completion": "a"}'],
        ["--reward", "hamming"],
        "reward hamming: it needs 'gold', which is neither a dataset column (none) nor a trainer argument",
    ),
    (
        ['{"completion": "a"}'],
        ["--reward", "formatt"],
        "reward formatt: unknown reward 'formatt' (did you mean 'format'?); built-ins: format, label_valid",
    ),
    (
        ['{"completion": "a"}'],
        ["--reward", "no_such_pkg_xyz:fn"],
        "reward no_such_pkg_xyz:fn: plug-in module 'no_such_pkg_xyz' not found on the Python path",
    ),
    (
        ['{"completion": "a"}'] * 3,
        ["--reward", "format", "--group-size", "2"],
        "3 completions do not split into groups of 2; give --group-size that divides 3",
    ),
]


@pytest.mark.parametrize("lines,args,message", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_rewards_test_user_errors_exit_2(invoke, tmp_path, lines, args, message):
    data = write_jsonl(tmp_path / "c.jsonl", lines)
    result = invoke("rewards", "test", "--completions", data, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    assert message in result.stderr


def test_rewards_test_missing_file_and_unknown_recipe_reward(invoke, tmp_path):
    missing = invoke("rewards", "test", "--completions", tmp_path / "nope.jsonl")
    assert missing.exit_code == 2 and f"{tmp_path / 'nope.jsonl'}: no such file" in missing.stderr
    data = write_jsonl(tmp_path / "c.jsonl", ROWS)
    other = invoke("rewards", "test", GRPO_TINY, "--completions", data, "--reward", "cot_length")
    assert other.exit_code == 2
    assert (
        "--reward cot_length: not in" in other.stderr
        and "it has: format, stepwise_label, hamming" in other.stderr
    )


def test_plugin_that_raises_is_a_user_error(invoke, tmp_path):
    (tmp_path / "bad.py").write_text(
        "def boom(completions, **kwargs):\n    raise KeyError('gold_x')\n"
    )
    data = write_jsonl(tmp_path / "c.jsonl", [{"completion": "a"}])
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)  # without a recipe, plug-in files resolve from the working directory
    try:
        result = invoke("rewards", "test", "--completions", data, "--reward", "bad.py:boom")
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2
    assert "reward 'boom' raised KeyError: 'gold_x'" in result.stderr


def test_help_texts(invoke):
    for args in (
        ["rewards", "--help"],
        ["rewards", "list", "--help"],
        ["rewards", "test", "--help"],
    ):
        result = invoke(*args)
        assert result.exit_code == 0 and "Usage:" in result.output
    assert "--group-size" in invoke("rewards", "test", "--help").output


def test_async_plugin_is_awaited(invoke, tmp_path, monkeypatch):
    (tmp_path / "judge.py").write_text(
        "async def judge(completions, **kwargs):\n    return [0.25 * len(c) for c in completions]\n"
    )
    data = write_jsonl(tmp_path / "c.jsonl", [{"completion": "ab"}, {"completion": "abcd"}])
    monkeypatch.chdir(
        tmp_path
    )  # without a recipe, plug-in files resolve from the working directory
    result = invoke(
        "rewards", "test", "--completions", data, "--reward", "judge.py:judge", "--json"
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["rewards"] for line in result.stdout.splitlines()] == [
        {"judge": 0.5},
        {"judge": 1.0},
    ]
