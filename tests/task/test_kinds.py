"""Answer kinds: parse, render, gold codecs, and the three grammar forms (lark for local
decoding, regex and JSON schema for servers) admitting exactly the same labels."""

from __future__ import annotations

import itertools
import json
import re

import llguidance
import llguidance.hf
import pytest

from llmscisci_cfg.task.constraints import LabelRule
from llmscisci_cfg.task.grammar import Constraint, check
from llmscisci_cfg.task.kinds import (
    DimensionLabel,
    MultiLabel,
    SingleLabel,
    from_wire,
    read_answer,
    wire,
)
from llmscisci_cfg.task.labels import LabelError

SINGLE = SingleLabel(("background information", "method", "results comparison"),
                     codes=(("1", 0), ("2", 1), ("3", 2)),
                     aliases=(("results", 2),))  # fmt: skip
MULTI = MultiLabel.plain(5, LabelRule(5, (4,), 1))
DIMS = DimensionLabel(("happiness", "anxiety", "belief in god"), ("low", "medium", "high"),
                      aliases=(("belief in God (religion)", 2),))  # fmt: skip


def tags(label_text: str) -> str:
    return f"<think>\nreasons\n</think>\n<label>\n{label_text}\n</label>"


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("method", 1),
        ("  Background   Information ", 0),  # case and spaces do not matter
        ('"method"', 1),  # quoted
        ("results", 2),  # an alias
        ("methods", None),  # never guessed
        ("method, results comparison", None),
        ("", None),
    ],
)
def test_single_parse(text, value):
    assert SINGLE.parse(text) == value


def test_single_gold_codecs():
    assert SINGLE.decode_gold("Results Comparison") == 2
    assert SINGLE.decode_gold("2") == 1 and SINGLE.decode_gold(3) == 2
    assert SINGLE.decode_gold("[0, 1, 0]") == 1 and SINGLE.decode_gold([1, 0, 0]) == 0
    for bad in ("metod", "[1, 1, 0]", "9", None, True):
        with pytest.raises(LabelError):
            SINGLE.decode_gold(bad)


def test_dimensions_parse_and_gold_as_the_teacher_wrote_it():
    gold = "{ 'happiness' : 'high', 'belief in god (religion)' : 'low' }"  # answers.csv style
    assert DIMS.decode_gold(gold) == (3, 0, 1)
    assert DIMS.decode_gold("{}") == (0, 0, 0)
    for empty in ("", "   "):  # how a CSV writes a missing value: never a coding
        with pytest.raises(LabelError, match=r"the label is empty \(write \{\} for a coding"):
            DIMS.decode_gold(empty)
    assert DIMS.parse('{"anxiety": "Medium"}') == (0, 2, 0)
    assert DIMS.render((3, 0, 1)) == '{"happiness": "high", "belief in god": "low"}'
    assert DIMS.public((3, 0, 1)) == {"happiness": "high", "belief in god": "low"}
    with pytest.raises(LabelError, match="unknown dimension 'joy'"):
        DIMS.decode_gold("{'joy': 'high'}")
    with pytest.raises(LabelError, match="unknown level 'extreme'"):
        DIMS.decode_gold("{'happiness': 'extreme'}")
    assert DIMS.parse('{"happiness": "high", "HAPPINESS": "low"}') is None  # twice


def test_multi_keeps_its_rule_and_reads_names_and_codes():
    assert MULTI.parse("[1, 0, 0, 0, 0]") == [1, 0, 0, 0, 0]
    assert MULTI.parse("[0, 0, 0, 0, 0]") is None and MULTI.parse("[1, 0, 0, 0, 1]") is None
    named = MultiLabel(("a", "b", "c"))
    assert named.decode_gold("a; C") == [1, 0, 1] and named.decode_gold(["b"]) == [0, 1, 0]
    assert named.decode_gold("1, 3") == [1, 0, 1] and named.decode_gold("[0, 1, 1]") == [0, 1, 1]


@pytest.mark.parametrize("kind", [SINGLE, MULTI, DIMS], ids=lambda k: k.kind)
def test_render_parse_and_wire_round_trip(kind):
    value = kind.example()
    assert kind.parse(kind.render(value)) == value
    assert kind.decode_gold(kind.public(value)) == value
    assert from_wire(json.loads(json.dumps(wire(kind)))).parse(kind.render(value)) == value


def test_the_json_answer_form_reads_like_the_tags():
    json_form = json.dumps({"think": "reasons", "label": "method"})
    assert read_answer(json_form, SINGLE).value == read_answer(tags("method"), SINGLE).value == 1
    assert read_answer('{"think": 1, "label": "method"}', SINGLE).format_ok is False
    assert read_answer('{"label": "method"}', SINGLE).value is None


# ----------------------------------------------------------------------------- the forms agree


def candidates(kind):
    """Label values to try: every one of the kind's (small) space, plus near misses."""
    if kind is SINGLE:
        return [(c, kind.parse(c)) for c in (*kind.categories, "Method", "none", "method ")]
    if kind is MULTI:
        return [(kind.render(list(b)), list(b)) for b in itertools.product((0, 1), repeat=5)]
    return [
        (
            json.dumps(
                {n: kind.levels[v - 1] for n, v in zip(kind.categories, vals, strict=True) if v}
            ),
            vals,
        )  # fmt: skip
        for vals in itertools.product(range(4), repeat=3)
    ] + [('{"anxiety": "low", "happiness": "low"}', "unordered")]  # out of codebook order


@pytest.fixture(scope="module")
def ll_tokenizer():
    from llmscisci_cfg.models.tiny import load_tiny_tokenizer

    tok = load_tiny_tokenizer()
    return tok, llguidance.hf.from_tokenizer(tok)


def grammar_accepts(tok, ll, constraint, text) -> bool:
    matcher = llguidance.LLMatcher(ll, constraint.grammar(tok, 512))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return matcher.consume_tokens(ids) and matcher.is_accepting()


@pytest.mark.parametrize("kind", [SINGLE, MULTI, DIMS], ids=lambda k: k.kind)
def test_grammar_regex_and_json_schema_admit_the_same_labels(kind, ll_tokenizer):
    """What the local grammar lets a model write, a vLLM regex and an exact JSON schema let it
    write too: the same labels, the task's constraints included."""
    tok, ll = ll_tokenizer
    constraint = Constraint.answer(kind)
    pattern = re.compile(constraint.regex(), re.DOTALL)
    schema = constraint.json_form()["properties"]["label"]
    for text, value in candidates(kind):
        unordered = value == "unordered"  # the same value; JSON does not order keys
        value = None if unordered else value
        allowed = value is not None and (kind.rule is None or kind.rule.allows(value)
                                          if kind is MULTI else True)  # fmt: skip
        answer = tags(text)
        if kind is SINGLE and text not in kind.categories:
            allowed = False  # only the canonical spelling is written (read leniently)
        assert bool(pattern.fullmatch(answer)) == allowed, text
        assert check(constraint, answer) == allowed, text
        assert grammar_accepts(tok, ll, constraint, answer) == allowed, text
        label = json.loads(text) if kind is not SINGLE else text
        assert _schema_admits(schema, label) == (allowed or unordered), text


def _schema_admits(schema, value) -> bool:
    from llmscisci_cfg.task.grammar import _valid

    if "type" not in schema and "enum" in schema:
        return any(_same(value, v) for v in schema["enum"])
    if schema.get("type") == "object":
        ok = isinstance(value, dict) and set(value) <= set(schema["properties"])
        return ok and all(_valid(v, schema["properties"][k]) for k, v in value.items())
    return _valid(value, schema)


def _same(a, b) -> bool:
    return json.dumps(a) == json.dumps(b)


def test_a_dimension_answer_in_any_order_is_read_but_written_in_codebook_order():
    text = '{"anxiety": "low", "happiness": "low"}'
    assert DIMS.parse(text) == (1, 1, 0)
    assert not check(Constraint.answer(DIMS), tags(text))
