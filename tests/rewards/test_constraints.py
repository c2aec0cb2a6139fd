"""Label constraints in the rewards: off by default, even when the task declares them (the
research's values: they decode but never score), and with ``constrained: true`` a label that
breaks them scores as an invalid label does."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from llmscisci_cfg.cli.rewards import register
from llmscisci_cfg.recipe.schema import RewardSpec
from llmscisci_cfg.rewards import builtin
from llmscisci_cfg.rewards.compose import build_rewards
from llmscisci_cfg.rewards.registry import BUILTINS, check_callables, check_specs
from llmscisci_cfg.task.constraints import LabelRule
from tests.data_helpers import constrained_task
from tests.rewards.conftest import kinds

RULE = LabelRule(5, (4,), 1, ("5",))  # exclusive: [5], min_positive: 1
GOLD = [1, 0, 1, 0, 0]
WS = builtin.WhitespaceTokenizer()


def w(label: str) -> str:
    return f"<think>a b</think>\n<label>{label}</label>"


# completion → (label_valid, stepwise, hamming) without constraints, then with RULE
TABLE = [
    (w("[0, 0, 0, 0, 0]"), (0.5, 1.0, 0.6), (0.0, 0.375, 0.0)),  # pinned: all zeros
    (w("[1, 0, 0, 0, 1]"), (0.5, 1.0, 0.6), (0.0, 0.375, 0.0)),  # pinned: 5 not alone
    (w("[0,0,0,0,0]"), (0.5, 1.0, 0.6), (0.0, 0.375, 0.0)),  # compact canonical spelling
    (w(" [ 1, 0, 0, 0, 1 ] "), (0.5, 1.0, 0.6), (0.0, 0.375, 0.0)),  # parsed, not canonical
    (w("[0, 0, 0, 0, 1]"), (0.5, 1.0, 0.4), (0.5, 1.0, 0.4)),  # 5 alone: fine
    (w("[1, 0, 1, 0, 0]"), (0.5, 1.0, 1.0), (0.5, 1.0, 1.0)),
    (w("[1, 0, 1, 0]"), (0.0, 0.375, 0.0), (0.0, 0.375, 0.0)),  # invalid either way
    ("[0, 0, 0, 0, 1]", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),  # no format
    ("<think>a</think><label>[1, 0, 0, 0, 1]", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),  # open block
]


def _scores(completions, rule=RULE, **kw):
    kind = kinds(5, rule) if not isinstance(rule, dict) else rule
    return (
        builtin.label_valid(completions, label_kind=kind, **kw),
        builtin.stepwise_label(completions, label_kind=kind, **kw),
        builtin.hamming(completions, gold=[GOLD] * len(completions), label_kind=kind, **kw),
    )


@pytest.mark.parametrize(("text", "plain", "strict"), TABLE)
def test_table(text, plain, strict):
    assert tuple(s[0] for s in _scores([text], rule=None)) == pytest.approx(plain)
    assert tuple(s[0] for s in _scores([text])) == pytest.approx(plain)  # the research's
    assert tuple(s[0] for s in _scores([text], constrained=True)) == pytest.approx(strict)


def test_per_aspect_rules_follow_the_aspect_column():
    texts = [w("[0, 0, 0, 0, 0]")] * 2
    rules = {"easy": kinds(5, RULE), "difficult": kinds(5)}
    out = _scores(texts, rules, constrained=True, aspect=["easy", "difficult"])
    assert out == ([0.0, 0.5], [0.375, 1.0], [0.0, 0.6])


def test_cond_cot_stepwise_needs_a_label_that_keeps_the_rule():
    texts = [w("[0, 0, 0, 0, 0]"), w("[0, 0, 0, 0, 1]")]
    kw = dict(tokenizer=WS, label_kind=kinds(5, RULE), alpha=0.1, threshold=1.0)
    assert builtin.cond_cot_stepwise(texts, **kw) == pytest.approx([1.2, 1.2])
    strict = builtin.cond_cot_stepwise(texts, constrained=True, **kw)
    assert strict == pytest.approx([0.375, 1.2])


def test_the_task_constraints_score_only_when_a_reward_asks():
    names = ("format", "label_valid", "stepwise_label", "hamming")
    plain = build_rewards([RewardSpec(name=n) for n in names], Path("."), {"easy": kinds(5, RULE)})
    strict_specs = [RewardSpec(name="label_valid", params={"constrained": True})]
    strict = build_rewards(strict_specs, Path("."), {"easy": kinds(5, RULE)})
    text = [w("[0, 0, 0, 0, 0]")]
    assert strict.funcs[0](completions=text, aspect=["easy"]) == [0.0]
    assert plain.funcs[1](completions=text, aspect=["easy"]) == [0.5]


def test_constraints_are_supplied_never_a_parameter(tmp_path):
    assert all("label_constraints" not in b.params for b in BUILTINS.values())
    problems = check_specs(
        [RewardSpec(name="hamming", params={"label_constraints": [5]})], tmp_path
    )
    assert [p.message for p in problems] == [
        "label_constraints is supplied by the task file (its `constraints`); remove it from params"
    ]
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "def strict(completions, label_constraints=None, **kwargs):\n"
        "    return [0.0 if label_constraints is None else 1.0 for _ in completions]\n"
    )
    spec = RewardSpec(name="mine.py:strict")
    assert check_callables([spec], tmp_path) == []
    stack = build_rewards([spec], tmp_path, kinds(5, RULE))
    assert stack.funcs[0](completions=["x"]) == [1.0]


def test_rewards_test_reads_the_recipe_task_constraints(tmp_path):
    constrained_task(tmp_path)
    recipe = {
        "name": "strict",
        "model": {"name_or_path": "builtin:tiny"},
        "data": {
            "source": {"path": "builtin:sample"},
            "task": "strict.yaml",
            "columns": {"id": "doi", "label": {"easy": "y_easy_gpt4", "difficult": "y_diff_gpt4"}},
        },
        "method": {"name": "grpo", "num_generations": 2},
        "train": {"per_device_batch_size": 2},
        "rewards": [
            {"name": "label_valid", "params": {"constrained": True}},
            {"name": "stepwise_label", "params": {"constrained": True}},
            {"name": "hamming", "params": {"constrained": True}},
        ],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    rows = [
        {"completion": w("[0, 0, 0, 0, 0]"), "gold": GOLD},
        {"completion": w("[1, 0, 1, 0, 0]"), "gold": GOLD},
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    group = click.Group()
    register(group)
    args = ["rewards", "test", str(tmp_path / "r.yaml"), "--completions", str(tmp_path / "c.jsonl")]
    result = CliRunner().invoke(group, [*args, "--json"])
    assert result.exit_code == 0, result.output
    scored = [json.loads(line)["rewards"] for line in result.stdout.splitlines()]
    assert scored == [
        {"label_valid": 0.0, "stepwise_label": 0.375, "hamming": 0.0},
        {"label_valid": 0.5, "stepwise_label": 1.0, "hamming": 1.0},
    ]
