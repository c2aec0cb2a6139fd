"""Structured decoding: every answer of the untrained tiny model is valid under its constraint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models.structured import processor_for
from llmscisci_cfg.task.answer import parse_completion
from llmscisci_cfg.task.grammar import Constraint, bounded_schema, check, think_label_lark
from tests.conftest import REPO

LABELS = {
    "type": "object",
    "properties": {
        "labels": {
            "type": "array",
            "items": {"type": "integer", "enum": [0, 1]},
            "minItems": 5,
            "maxItems": 5,
        }
    },
    "required": ["labels"],
    "additionalProperties": False,
}
REASON = {
    "type": "object",
    "properties": {"reason": {"type": "string"}, "easy": {"type": "boolean"}},
    "required": ["reason", "easy"],
    "additionalProperties": False,
}
SECTIONS = [
    "Code was public.",
    "The authors shared code, data and seeds, but the training took three days on a GPU.",
    "Hyperparameters were missing from the paper.",
    "Everything needed was in the appendix, and the results matched within one point.",
]


@pytest.fixture(scope="module")
def tokenizer():
    from llmscisci_cfg.models.tiny import load_tiny_tokenizer

    return load_tiny_tokenizer()


@pytest.fixture(scope="module")
def model():
    from llmscisci_cfg.models.tiny import build_tiny_model

    return build_tiny_model("builtin:tiny", 0)


@pytest.fixture(scope="module")
def stops(model, tokenizer):
    from llmscisci_cfg.models.generate import stop_ids

    return stop_ids(model, tokenizer)


def prompts(tokenizer, sections=SECTIONS) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Label this section: {s}"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for s in sections
    ]


def generate(
    model, tokenizer, stops, texts, constraints, *, max_new_tokens=48, sample=0, before=()
):
    """Completions (cut at the first stop) and their token counts; ``sample`` answers per prompt
    (0: greedy, one each); ``before``: processors that run ahead of the constraint."""
    import torch
    from transformers import LogitsProcessorList

    from llmscisci_cfg.models.generate import until_stop

    proc = processor_for(tokenizer, constraints, max_new_tokens=max_new_tokens, stop_ids=stops)
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    kwargs = dict(do_sample=True, temperature=1.0, top_k=0, num_return_sequences=sample)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
        logits_processor=LogitsProcessorList([*before, proc]),
        **(kwargs if sample else dict(do_sample=False)),
    )
    rows = [until_stop(r, stops)[0] for r in out[:, enc["input_ids"].shape[1] :].tolist()]
    return [tokenizer.decode(r) for r in rows], [len(r) for r in rows]


class Boost:
    """A processor that pushes one token up by ``by`` at every step (a model that never stops)."""

    def __init__(self, token_id: int, by: float = 50.0):
        self.token_id, self.by = token_id, by

    def __call__(self, input_ids, scores):
        scores[:, self.token_id] += self.by
        return scores


# ----------------------------------------------------------------------------- imports


def test_import_loads_no_torch_or_transformers():
    probe = (
        "import sys, llguidance\n"
        "bare = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "import llmscisci_cfg.models.structured\n"
        "print(bare, sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "[]"]


# ----------------------------------------------------------------------------- generation


def test_a_pad_token_the_grammar_allows_is_text_not_the_end(model, tokenizer, stops):
    """A tokenizer whose pad is a plain word: a row that samples it (pushed here) writes it as
    text and stays constrained; only a pad the grammar refuses (generate padding a row that a
    stop string ended) ends a row."""
    import copy

    word = tokenizer.convert_ids_to_tokens(tokenizer.encode(" the", add_special_tokens=False))[0]
    padded = copy.deepcopy(tokenizer)
    padded.pad_token = word
    texts, _ = generate(
        model, padded, stops, prompts(padded), Constraint.think_label(5), sample=2,
        before=[Boost(padded.pad_token_id, by=5.0)],
    )  # fmt: skip
    assert sum(t.count(" the") for t in texts) > len(texts)  # the pad, sampled as text
    for text in texts:
        assert check(Constraint.think_label(5), text), text


def test_sampled_label_answers_are_all_valid(model, tokenizer, stops):
    texts, lengths = generate(
        model, tokenizer, stops, prompts(tokenizer), Constraint.think_label(5), sample=5
    )
    assert len(texts) == 20
    parsed = [parse_completion(t, 5) for t in texts]
    for text, (fmt, label) in zip(texts, parsed, strict=True):
        assert fmt is True, text
        assert isinstance(label, list) and len(label) == 5 and set(label) <= {0, 1}, text
        assert check(Constraint.think_label(5), text), text
    assert max(lengths) <= 48
    assert len({tuple(label) for _, label in parsed}) > 1  # sampling, not one forced answer


def test_sampled_json_answers_are_all_valid(model, tokenizer, stops):
    constraint = Constraint.json_schema(LABELS)
    texts, _ = generate(model, tokenizer, stops, prompts(tokenizer), constraint, sample=5)
    assert len(texts) == 20
    for text in texts:
        value = json.loads(text)
        assert set(value) == {"labels"}
        assert len(value["labels"]) == 5 and set(value["labels"]) <= {0, 1}
        assert check(constraint, text)
    assert len({t for t in texts}) > 1


def test_uneven_prompts_in_one_batch_match_each_prompt_alone(model, tokenizer, stops):
    texts = prompts(tokenizer)
    lengths = {len(tokenizer(t)["input_ids"]) for t in texts}
    assert len(lengths) == len(texts)  # really uneven, so rows are left-padded
    constraint = Constraint.think_label(5)
    batch, _ = generate(model, tokenizer, stops, texts, constraint)
    alone = [generate(model, tokenizer, stops, [t], constraint)[0][0] for t in texts]
    assert batch == alone
    assert all(check(constraint, t) for t in batch)


def test_greedy_is_deterministic_and_valid(model, tokenizer, stops):
    constraint = Constraint.json_schema(LABELS)
    first, _ = generate(model, tokenizer, stops, prompts(tokenizer)[:2], constraint)
    again, _ = generate(model, tokenizer, stops, prompts(tokenizer)[:2], constraint)
    assert first == again
    assert all(check(constraint, t) for t in first)


def test_rows_with_other_constraints_finish_at_their_own_time(model, tokenizer, stops):
    constraints = [Constraint.think_label(5), Constraint.json_schema(LABELS)]
    texts, lengths = generate(model, tokenizer, stops, prompts(tokenizer)[:2], constraints)
    assert check(constraints[0], texts[0]) and check(constraints[1], texts[1])
    # compact {"labels":[…]} is done after ~20 tokens; the think row runs its budget out
    assert lengths[1] < 30 < lengths[0] <= 48


def test_each_prompt_keeps_its_constraint_across_its_returned_sequences(model, tokenizer, stops):
    constraints = [Constraint.json_schema(LABELS), Constraint.think_label(5, max_think_tokens=0)]
    texts, _ = generate(model, tokenizer, stops, prompts(tokenizer)[:2], constraints, sample=3)
    assert [check(constraints[0], t) for t in texts] == [True] * 3 + [False] * 3
    assert [check(constraints[1], t) for t in texts] == [False] * 3 + [True] * 3
    assert all(t.startswith("<think></think>") for t in texts[3:])  # no think budget


def test_a_model_that_never_stops_still_closes_its_answer(model, tokenizer, stops):
    letter = tokenizer.convert_tokens_to_ids("a")
    texts, lengths = generate(
        model,
        tokenizer,
        stops,
        prompts(tokenizer)[:2],
        Constraint.think_label(5),
        before=[Boost(letter)],
    )
    assert all(t.startswith("<think>aaaa") for t in texts)
    assert all(check(Constraint.think_label(5), t) for t in texts)
    assert max(lengths) <= 48
    # free strings in JSON are bounded too
    texts, lengths = generate(
        model,
        tokenizer,
        stops,
        prompts(tokenizer)[:2],
        Constraint.json_schema(REASON),
        max_new_tokens=40,
        before=[Boost(letter)],
    )
    bound = bounded_schema(REASON, 40)["properties"]["reason"]["maxLength"]
    for text in texts:
        assert json.loads(text)["reason"] == "a" * bound
        assert check(Constraint.json_schema(REASON), text)
    assert max(lengths) <= 40


def test_a_model_that_wants_to_stop_at_once_is_kept_going(model, tokenizer, stops):
    texts, _ = generate(
        model,
        tokenizer,
        stops,
        prompts(tokenizer)[:2],
        Constraint.think_label(3, max_think_tokens=4),
        before=[Boost(stops[0], by=100.0)],
    )
    assert all(check(Constraint.think_label(3), t) for t in texts)


def test_a_processor_serves_one_generate_call(model, tokenizer, stops):
    import torch

    proc = processor_for(tokenizer, Constraint.think_label(5), max_new_tokens=48, stop_ids=stops)
    enc = tokenizer(prompts(tokenizer)[:1], return_tensors="pt", add_special_tokens=False)
    kwargs = dict(max_new_tokens=48, eos_token_id=stops, logits_processor=[proc])
    model.generate(**enc, **kwargs, pad_token_id=tokenizer.pad_token_id)
    with pytest.raises(RuntimeError, match="one generate call"):
        with torch.inference_mode():
            model.generate(**enc, **kwargs, pad_token_id=tokenizer.pad_token_id)


# ----------------------------------------------------------------------------- bounds


def test_think_budget_is_max_new_tokens_minus_the_fixed_parts(tokenizer):
    # tags are added tokens here (1 each): 4 + 3 optional newlines + "[" "]" + 5 digits + 4 ", "
    lark = think_label_lark(Constraint.think_label(5), tokenizer, 48)
    assert "think[max_tokens=26]" in lark and lark.count("<[") == 4
    assert "think[max_tokens=10]" in think_label_lark(Constraint.think_label(5, 10), tokenizer, 48)
    assert "think" not in think_label_lark(Constraint.think_label(5), tokenizer, 22).split()


def test_bounded_schema_shares_what_is_left_among_free_strings():
    # {"a":"","b":[]} costs 2+4+1+2+1+4+1+2·3+1·2=... ; strings: 1 + 2 inside b (maxItems 2)
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "c": {"type": "string", "maxLength": 3},
        },
        "additionalProperties": False,
    }
    bounded = bounded_schema(schema, 100)
    fixed = len('{"a":"","b":["",""],"c":""}') + 4 * 3
    length = (100 - fixed) // (4 * 3)
    assert bounded["properties"]["a"]["maxLength"] == length
    assert bounded["properties"]["b"]["items"]["maxLength"] == length
    assert bounded["properties"]["c"]["maxLength"] == 3
    assert "maxLength" not in schema["properties"]["a"]  # the caller's schema is untouched
    assert bounded_schema(LABELS, 22) == LABELS  # no free text: unchanged


@pytest.mark.parametrize(
    ("constraint", "max_new_tokens", "message"),
    [
        (
            Constraint.think_label(5),
            21,
            r"max_new_tokens \(21\) is too small .* max_new_tokens: 22",
        ),
        (Constraint.json_schema(LABELS), 21, r"may take 22 tokens"),
        (Constraint.json_schema(REASON), 29, r"no room .* max_new_tokens: 30"),
    ],
)
def test_a_budget_too_small_is_a_user_error(tokenizer, constraint, max_new_tokens, message):
    with pytest.raises(UserError, match=message):
        processor_for(tokenizer, constraint, max_new_tokens=max_new_tokens, stop_ids=[10])


# ----------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"anyOf": [{"type": "integer"}]}, r"\$: needs a 'type'.*\n.*unsupported keyword 'anyOf'"),
        ({"type": "string", "pattern": "^a+$"}, r"\$: unsupported keyword 'pattern'"),
        ({"type": "array", "items": {"type": "boolean"}}, r"\$: an array needs 'maxItems'"),
        (
            {"type": "object", "properties": {}},
            r"\$: an object needs 'additionalProperties: false'",
        ),
        ({"type": "integer", "minimum": 0}, r"\$: an integer needs a lower and an upper bound"),
        ({"type": "number"}, r"\$: a number needs an 'enum'"),
        ({"type": ["string", "null"]}, r"\$: unsupported type \['string', 'null'\]"),
        (
            {**LABELS, "properties": {"labels": {"$ref": "#/$defs/x"}}},
            r"\$\.labels: needs a 'type'.*\n.*\$\.labels: unsupported keyword '\$ref'",
        ),
    ],
)
def test_an_unsupported_schema_is_a_clear_user_error(schema, message):
    with pytest.raises(UserError, match=message) as info:
        Constraint.json_schema(schema)
    assert str(info.value).startswith("structured output: JSON schema not supported:")


def test_a_schema_llguidance_refuses_is_a_user_error(tokenizer):
    impossible = Constraint.json_schema({"type": "integer", "minimum": 5, "maximum": 1})
    with pytest.raises(UserError, match="minimum .5. is greater than maximum .1."):
        processor_for(tokenizer, impossible, max_new_tokens=8, stop_ids=[10])


# ----------------------------------------------------------------------------- check


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("<think>ok</think><label>[1, 0, 1]</label>", True),
        ("<think>\nok\n</think>\n<label>\n[0, 0, 0]\n</label>", True),
        ("<think></think><label>[1, 1, 1]</label>", True),
        ("<think>ok</think><label>[1,0,1]</label>", False),  # not the canonical spelling
        ("<think>ok</think><label>[1, 0]</label>", False),  # wrong length
        ("<think>ok</think><label>[1, 0, 2]</label>", False),
        ("<think>a<b</think><label>[1, 0, 1]</label>", False),  # '<' ends the think text
        ("<label>[1, 0, 1]</label>", False),
        ("<think>ok</think><label>[1, 0, 1]</label> trailing", False),
        ("", False),
    ],
)
def test_check_label_answers(text, valid):
    assert check(Constraint.think_label(3), text) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ('{"labels":[1,0,1,0,0]}', True),
        ('{ "labels": [0, 0, 0, 0, 0] }', True),  # whitespace is JSON too
        ('{"labels":[1,0,1,0]}', False),
        ('{"labels":[1,0,1,0,2]}', False),
        ('{"labels":[true,0,1,0,0]}', False),  # true is not 1 in JSON
        ('{"labels":[1,0,1,0,0],"x":1}', False),
        ("{}", False),
        ('{"labels":[1,0,1,0,0]', False),
    ],
)
def test_check_json_answers(text, valid):
    assert check(Constraint.json_schema(LABELS), text) is valid


def test_check_json_types_and_bounds():
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "exclusiveMaximum": 4},
            "s": {"type": "string", "minLength": 1, "maxLength": 3},
            "z": {"type": "null"},
            "k": {"const": "x"},
        },
        "required": ["n"],
        "additionalProperties": False,
    }
    c = Constraint.json_schema(schema)
    assert check(c, '{"n":3,"s":"abc","z":null,"k":"x"}')
    assert check(c, '{"n":1.0}')  # an integer-valued number is an integer
    assert not check(c, '{"n":4}')
    assert not check(c, '{"n":1.5}')
    assert not check(c, '{"n":2,"s":""}')
    assert not check(c, '{"n":2,"z":0}')
    assert not check(c, '{"n":2,"k":"y"}')


# ----------------------------------------------------------------------------- label constraints


def _accepts(tokenizer, constraint, text: str) -> bool:
    """Whether the grammar of ``constraint`` accepts ``text`` as tokenized by ``tokenizer``."""
    import llguidance

    from llmscisci_cfg.models.structured import _ll_tokenizer

    ll = _ll_tokenizer(tokenizer, (tokenizer.eos_token_id,))
    matcher = llguidance.LLMatcher(ll, constraint.grammar(tokenizer, 64), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return bool(matcher.consume_tokens(ids)) and matcher.is_accepting()


@pytest.mark.parametrize(
    ("n", "exclusive", "min_positive"),
    [(5, (4,), 1), (5, (), 2), (5, (0, 4), 0), (5, (2,), 0), (3, (), 3), (2, (1,), 1), (1, (), 1)],
)
def test_the_grammar_admits_exactly_the_labels_the_rule_allows(
    tokenizer, n, exclusive, min_positive
):
    import itertools

    from llmscisci_cfg.task.constraints import LabelRule

    rule = LabelRule(n, exclusive, min_positive)
    constraint = Constraint.think_label(n, rule=rule)
    for bits in itertools.product((0, 1), repeat=n):
        text = "<think>x</think>\n<label>\n[" + ", ".join(map(str, bits)) + "]\n</label>"
        assert _accepts(tokenizer, constraint, text) is rule.allows(bits), bits
        assert check(constraint, text) is rule.allows(bits), bits
        assert _accepts(tokenizer, Constraint.think_label(n), text)  # no rule: every label


def test_without_a_rule_the_grammar_is_unchanged(tokenizer):
    lark = think_label_lark(Constraint.think_label(5), tokenizer, 48)
    assert '"[" BIT (", " BIT){4} "]"' in lark and "labels" not in lark


def test_sampled_answers_keep_the_rule(model, tokenizer, stops):
    from llmscisci_cfg.task.constraints import LabelRule

    rule = LabelRule(5, (4,), 1)
    constraint = Constraint.think_label(5, rule=rule)
    texts, _ = generate(model, tokenizer, stops, prompts(tokenizer), constraint, sample=5)
    labels = [parse_completion(t, 5)[1] for t in texts]
    assert all(label is not None and rule.allows(label) for label in labels), texts
    assert len({tuple(label) for label in labels}) > 1
