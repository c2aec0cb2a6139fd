"""The rewards every answer kind shares, on the shipped codebooks: input → expected tables for a
single-label answer (citation intent) and a dimensions answer (flourishing), the nasty inputs
included; then the study GRPO recipes' reward stacks through `llmscisci rewards test`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmscisci_cfg.rewards.builtin import correct, format_reward, label_valid, stepwise_label
from llmscisci_cfg.task.spec import load_task

INTENT = load_task("builtin:citation_intent", Path(".")).label_kind("intent")
FLOURISHING = load_task("builtin:flourishing", Path(".")).label_kind("flourishing")


def w(label: str, think: str = "x") -> str:
    return f"<think>{think}</think>\n<label>{label}</label>"


def scores(completion, gold, kind) -> tuple[float, float, float, float]:
    """(format, label_valid, correct, stepwise_label) of one completion."""
    c = [completion]
    return (
        format_reward(c)[0],
        label_valid(c, label_kind=kind)[0],
        correct(c, gold=[gold], label_kind=kind)[0],
        stepwise_label(c, label_kind=kind)[0],
    )


# case, completion, (format, label_valid, correct, stepwise); gold "method"
SINGLE = [
    ("exact", w("method"), (1.0, 0.5, 1.0, 1.0)),
    ("as SFT writes it", "<think>\nuses a tool\n</think>\n<label>\nmethod\n</label>", (1.0, 0.5, 1.0, 1.0)),
    ("case and spaces", w("  METHOD "), (1.0, 0.5, 1.0, 1.0)),
    ("quoted", w('"method"'), (1.0, 0.5, 1.0, 1.0)),
    ("another category", w("background information"), (1.0, 0.5, 0.0, 1.0)),
    ("an alias of another", w("result"), (1.0, 0.5, 0.0, 1.0)),
    ("unknown name", w("methods"), (1.0, 0.0, 0.0, 0.375)),
    ("two names", w("method, results comparison"), (1.0, 0.0, 0.0, 0.375)),
    ("empty label", w(""), (1.0, 0.0, 0.0, 0.0)),
    ("no think block", "<label>method</label>", (0.0, 0.0, 1.0, 0.0)),
    ("unclosed label", "<think>x</think><label>method", (0.0, 0.0, 0.0, 0.0)),
    ("the last label counts", w("background information") + "<label>method</label>", (1.0, 0.5, 1.0, 1.0)),
    ("JSON answer form", '{"think": "x", "label": "method"}', (0.0, 0.0, 0.0, 0.0)),
    ("prose", "The citation is about a method.", (0.0, 0.0, 0.0, 0.0)),
    ("empty", "", (0.0, 0.0, 0.0, 0.0)),
    ("a chat message", [{"role": "assistant", "content": w("method")}], (1.0, 0.5, 1.0, 1.0)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "completion", "expected"), SINGLE, ids=[c[0] for c in SINGLE])
def test_single_label_rewards(case, completion, expected):
    assert scores(completion, "method", INTENT) == expected


@pytest.mark.parametrize("gold", ["method", " Method ", 1, "2", "[0, 1, 0]", [0, 1, 0]])
def test_correct_reads_gold_in_any_codec(gold):
    assert correct([w("method")], gold=[gold], label_kind=INTENT) == [1.0]


@pytest.mark.parametrize("gold", ["methods", None, "", "[1, 1, 0]", 7])
def test_an_unreadable_gold_scores_nothing(gold):
    assert correct([w("method")], gold=[gold], label_kind=INTENT) == [0.0]


GOLD = "{ 'happiness' : 'high', 'financial/material worry' : 'low' }"
# case, label text, (format, label_valid, correct, stepwise); 46 dimensions, gold GOLD
DIMENSIONS = [
    ("exact, codebook order", '{"Happiness": "high", "Financial or material worry": "low"}', (1.0, 0.5, 1.0, 1.0)),
    ("exact, other order", '{"Financial or material worry": "low", "Happiness": "high"}', (1.0, 0.5, 1.0, 1.0)),
    ("the gold's spellings", '{"happiness": "high", "financial/material worry": "low"}', (1.0, 0.5, 1.0, 1.0)),
    ("Python dict", "{'Happiness': 'high', 'Financial or material worry': 'low'}", (1.0, 0.5, 1.0, 1.0)),
    ("one level wrong", '{"Happiness": "medium", "Financial or material worry": "low"}', (1.0, 0.5, 45 / 46, 1.0)),
    ("one missing", '{"Happiness": "high"}', (1.0, 0.5, 45 / 46, 1.0)),
    ("one extra", '{"Happiness": "high", "Anxiety": "low", "Financial or material worry": "low"}', (1.0, 0.5, 45 / 46, 1.0)),
    ("none", "{}", (1.0, 0.5, 44 / 46, 1.0)),
    ("unknown dimension", '{"Joy": "high"}', (1.0, 0.0, 0.0, 0.375)),
    ("unknown level", '{"Happiness": "very high"}', (1.0, 0.0, 0.0, 0.375)),
    ("a level that is not text", '{"Happiness": 3}', (1.0, 0.0, 0.0, 0.375)),
    ("one dimension twice", '{"Happiness": "high", "Happiness": "low"}', (1.0, 0.0, 0.0, 0.375)),
    ("twice through an alias", '{"Financial or material worry": "low", "financial/material worry": "low"}', (1.0, 0.0, 0.0, 0.375)),
    ("a list", '["Happiness"]', (1.0, 0.0, 0.0, 0.375)),
    ("unclosed object", '{"Happiness": "high"', (1.0, 0.0, 0.0, 0.375)),
    ("empty label", "", (1.0, 0.0, 0.0, 0.0)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "label", "expected"), DIMENSIONS, ids=[c[0] for c in DIMENSIONS])
def test_dimensions_rewards(case, label, expected):
    got = scores(w(label), GOLD, FLOURISHING)
    assert got == pytest.approx(expected), got


def test_dimensions_gold_from_the_built_dataset_is_read_as_it_is():
    """The data stage stores one level per dimension (a list of 46 ints); rewards take it
    without decoding."""
    value = list(FLOURISHING.decode_gold(GOLD))
    exact = w('{"Happiness": "high", "Financial or material worry": "low"}')
    assert correct([exact, w("{}")], gold=[value, value], label_kind=FLOURISHING) == [
        1.0,
        pytest.approx(44 / 46),
    ]


@pytest.mark.parametrize(
    ("recipe", "rows", "expected"),
    [
        (
            "builtin:citation_intent/grpo_tiny",
            [(w("method"), "method"), (w("result"), "method"), (w("methods"), "method")],
            [(1.0, 0.5, 1.0, 3.5), (1.0, 0.5, 0.0, 1.5), (1.0, 0.0, 0.0, 1.0)],
        ),
        (
            "builtin:citation_function/grpo_tiny",
            [(w("CompareOrContrast"), "COMPARES_CONTRASTS"), (w("USES"), "EXTENDS")],
            [(1.0, 0.5, 1.0, 3.5), (1.0, 0.5, 0.0, 1.5)],
        ),
        (
            "builtin:flourishing/grpo_tiny",
            [(w('{"Happiness": "high", "Financial or material worry": "low"}'), GOLD),
             (w("{}"), GOLD), ("no answer", GOLD)],
            [(1.0, 0.5, 1.0, 3.5), (1.0, 0.5, 44 / 46, 1.5 + 88 / 46), (0.0, 0.0, 0.0, 0.0)],
        ),
    ],
)  # fmt: skip
def test_the_study_recipes_reward_stacks(cli, tmp_path, recipe, rows, expected):
    """`rewards test` with a study's GRPO recipe: format, label_valid and correct (weight 2),
    gold written as the real data writes it."""
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"completion": c, "gold": g}) + "\n" for c, g in rows))
    result = cli("rewards", "test", recipe, "--completions", data, "--json", "--group-size", 1)
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [list(g["rewards"]) for g in got] == [["format", "label_valid", "correct"]] * len(rows)
    for g, (fmt, valid, right, total) in zip(got, expected, strict=True):
        values = (g["rewards"]["format"], g["rewards"]["label_valid"], g["rewards"]["correct"])
        assert values == pytest.approx((fmt, valid, right))
        assert g["total"] == pytest.approx(total)
