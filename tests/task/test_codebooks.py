"""The shipped codebooks as task files: every label task's prompts, parser, renderer, gold codecs
and answer grammar (its regex, JSON and llguidance forms) agree; then the facts of each study
(SciCite's and ACL-ARC's gold strings, the 46 flourishing dimensions and answers.csv's spellings).

The generic tests collect every shipped task file, so a new codebook of an existing kind is
covered by adding its YAML file alone.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.resources import root
from llmscisci_cfg.task.grammar import Constraint, answer_lark, check, label_cost
from llmscisci_cfg.task.kinds import DimensionLabel, SingleLabel, read_answer
from llmscisci_cfg.task.labels import LabelError
from llmscisci_cfg.task.spec import load_task

TASK_FILES = sorted((root("assets") / "tasks").glob("*.yaml"))


def _label_tasks() -> list[tuple[str, str]]:
    """(task name, aspect) of every shipped task whose answers are labels."""
    out = []
    for path in TASK_FILES:
        task = load_task(f"builtin:{path.stem}", Path("."))
        if task.kind == "label":
            out += [(path.stem, aspect) for aspect in task.aspects]
    return out


LABEL_TASKS = _label_tasks()
SCICITE = ["background information", "method", "results comparison"]
ACL_ARC = ["BACKGROUND", "USES", "COMPARES_CONTRASTS", "MOTIVATION", "EXTENDS", "FUTURE"]
#: The paper's 46 dimensions in the order of its prompt (../shared/data/flourishing/README.md).
DIMENSIONS = [
    "Happiness", "Resilience", "Self-esteem", "Life satisfaction", "Fear of future", "Vitality",
    "Having energy", "Positive functioning", "Expressing job satisfaction", "Expressing optimism",
    "Peace with thoughts and feelings", "Purpose in life", "Depression", "Anxiety", "Suffering",
    "Feeling pain", "Expressing altruism", "Loneliness", "Quality of relationships",
    "Belonging to society", "Expressing gratitude", "Expressing trust", "Feeling trusted",
    "Balance in the various aspects of own life", "Mastery (ability or capability)",
    "Perceiving discrimination", "Feeling loved by God", "Belief in God", "Religious criticism",
    "Spiritual punishment", "Feeling religious comfort", "Financial or material worry",
    "Life after death belief", "Volunteering", "Charitable giving/helping",
    "Seeking for forgiveness", "Feeling having a political voice",
    "Expressing government approval", "Having hope", "Promoting good",
    "Expressing delayed gratification", "PTSD (Post-traumatic stress disorder)",
    "Describing smoking related health issues", "Describing drinking related health issues",
    "Describing health limitations", "Expressing empathy",
]  # fmt: skip


def _kind(name: str, aspect: str):
    task = load_task(f"builtin:{name}", Path("."))
    return task, task.label_kind(aspect)


def _values(kind) -> list:
    """Label values to round-trip: every single category; every allowed one-hot (or a sample);
    for dimensions each dimension alone at each level, none, all at the longest level, and a
    seeded sample of combinations."""
    if isinstance(kind, SingleLabel):
        return list(range(kind.n))
    if isinstance(kind, DimensionLabel):
        levels = len(kind.levels)
        out = [tuple(0 for _ in range(kind.n)), kind.longest()]
        out += [tuple(k if j == i else 0 for j in range(kind.n)) for i in range(kind.n) for k in range(1, levels + 1)]  # fmt: skip
        rng = random.Random(0)
        out += [tuple(rng.choice([0, 0, 0] + list(range(1, levels + 1))) for _ in range(kind.n)) for _ in range(50)]  # fmt: skip
        return out
    return kind.allowed() if kind.n <= 10 else [kind.example()]


def _json_value(kind, value):
    """The label as the JSON answer form writes it."""
    if isinstance(kind, DimensionLabel):
        return kind.public(value)
    return kind.render(value) if isinstance(kind, SingleLabel) else list(value)


# ----------------------------------------------------------------------------- every codebook


def test_the_three_studies_are_shipped():
    names = {p.stem for p in TASK_FILES}
    assert {"citation_intent", "citation_function", "flourishing", "repro_effort"} <= names
    kinds = {name: load_task(f"builtin:{name}", Path(".")).answer for name in names}
    assert kinds["citation_intent"] == kinds["citation_function"] == "single"
    assert kinds["flourishing"] == "dimensions" and kinds["repro_effort"] == "multi"


@pytest.mark.parametrize(("name", "aspect"), LABEL_TASKS)
def test_the_prompt_states_the_codebook_and_the_answer_format(name, aspect):
    task, kind = _kind(name, aspect)
    system, user = task.messages(aspect, "A sample text.")
    prompt = system["content"] + "\n" + user["content"]
    for category in kind.categories:
        assert category in prompt, f"{name}: the prompt never names {category!r}"
    assert "<think>" in system["content"] and "</label>" in system["content"]
    assert "<text>\nA sample text.\n</text>" in user["content"]
    if isinstance(kind, DimensionLabel):
        assert "{}" in system["content"] and "low, medium, high" in system["content"]


@pytest.mark.parametrize(("name", "aspect"), LABEL_TASKS)
def test_every_label_round_trips_through_every_reader(name, aspect):
    """SFT target → parser, the grammar's regex form, its JSON form and the gold codec all agree
    on every value (a sample for dimensions)."""
    task, kind = _kind(name, aspect)
    constraint = Constraint.answer(kind)
    json_form = Constraint.json_schema(constraint.json_form())
    for value in _values(kind):
        text = task.completion("some reasoning", value, aspect)
        read = read_answer(text, kind)
        assert read.format_ok and read.think == "some reasoning"
        assert _same(read.value, value), (text, read.value)
        assert check(constraint, text), text
        assert _same(kind.decode_gold(kind.render(value)), value)
        answer = json.dumps({"think": "x", "label": _json_value(kind, value)})
        assert check(json_form, answer), answer
        assert _same(read_answer(answer, kind).value, value)


@pytest.mark.parametrize(("name", "aspect"), LABEL_TASKS)
def test_the_grammar_refuses_what_no_reader_accepts(name, aspect):
    _, kind = _kind(name, aspect)
    constraint = Constraint.answer(kind)
    first = json.dumps(kind.categories[0])
    wrong = {
        "single": ["not a category", kind.categories[0] + " and more", ""],
        "multi": ["[2" + ", 0" * (kind.n - 1) + "]", "[1]", "yes"],
        "dimensions": ['{"Not a dimension": "high"}', f'{{{first}: "extreme"}}', "[]",
                       f'{{{first}: "high", {first}: "low"}}'],  # the last: a dimension twice
    }[kind.kind]  # fmt: skip
    for label in wrong:
        text = f"<think>x</think>\n<label>\n{label}\n</label>"
        assert not check(constraint, text), text
        assert read_answer(text, kind).value is None, text


def _same(a, b) -> bool:
    return list(a) == list(b) if isinstance(a, (list, tuple)) else a == b


# ----------------------------------------------------------------------------- the grammar on a tokenizer


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from llmscisci_cfg.models.tiny import load_tiny_tokenizer

    return load_tiny_tokenizer()


def _accepts(tokenizer, constraint, text: str, budget: int) -> bool:
    """Whether the llguidance grammar of ``constraint`` (for ``budget`` new tokens) accepts
    ``text`` as ``tokenizer`` spells it."""
    import llguidance

    from llmscisci_cfg.models.structured import _ll_tokenizer

    ll = _ll_tokenizer(tokenizer, (tokenizer.eos_token_id,))
    matcher = llguidance.LLMatcher(ll, constraint.grammar(tokenizer, budget), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return bool(matcher.consume_tokens(ids)) and matcher.is_accepting()


@pytest.mark.parametrize(("name", "aspect"), LABEL_TASKS)
def test_the_grammar_takes_the_sft_answers_and_names_the_smallest_budget(
    name, aspect, tiny_tokenizer
):
    """What SFT teaches is what constrained decoding allows (tokenized by the tiny model's
    tokenizer); a budget below the fixed parts is a user error that names the smallest fix."""
    task, kind = _kind(name, aspect)
    constraint = Constraint.answer(kind)
    fixed = 4 + 3 + label_cost(kind, tiny_tokenizer)  # the tiny tokenizer's tags are added tokens
    answer_lark(constraint, tiny_tokenizer, fixed)
    with pytest.raises(UserError, match=f"smallest fix: max_new_tokens: {fixed}"):
        answer_lark(constraint, tiny_tokenizer, fixed - 1)
    values = _values(kind)
    for value in values[:: max(1, len(values) // 12)]:
        text = task.completion("", value, aspect)
        assert _accepts(tiny_tokenizer, constraint, text, fixed + 40), text
    assert not _accepts(
        tiny_tokenizer, constraint, "<think>x</think>\n<label>\nnope\n</label>", fixed + 40
    )


# ----------------------------------------------------------------------------- citation intent (SciCite)


def test_citation_intent_is_scicite():
    task, kind = _kind("citation_intent", "intent")
    assert list(task.aspects) == ["intent"] and kind.categories == tuple(SCICITE)
    assert task.aspects["intent"].text_column == "citation_context"
    assert task.messages("intent", "x")[1]["content"].count("@@CITATION@@") == 1


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("background information", 0),
        ("method", 1),
        ("results comparison", 2),
        ("  Background   Information ", 0),  # case and spacing never matter
        ("RESULTS COMPARISON", 2),
        ("background", 0),  # SciCite's original label names (its JSON release)
        ("result", 2),
        ("1", 0),  # codes number the categories in order
        ("3", 2),
        ([0, 1, 0], 1),
        ("[0, 0, 1]", 2),
    ],
)
def test_citation_intent_gold_codecs(cell, expected):
    _, kind = _kind("citation_intent", "intent")
    assert kind.decode_gold(cell) == expected


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("results", "unknown category 'results'"),  # never guessed
        ("methods", "unknown category 'methods'"),
        ("4", "unknown category code '4'"),
        ("", "unknown category ''"),
        ("[1, 1, 0]", "expected one category"),
        (None, "expected a category name"),
        (True, "expected a category name"),
    ],
)
def test_citation_intent_refuses_what_it_cannot_read(cell, message):
    _, kind = _kind("citation_intent", "intent")
    with pytest.raises(LabelError, match=message.replace("[", r"\[")):
        kind.decode_gold(cell)


# ----------------------------------------------------------------------------- citation function (ACL-ARC)


def test_citation_function_is_acl_arc():
    task, kind = _kind("citation_function", "function")
    assert list(task.aspects) == ["function"] and kind.categories == tuple(ACL_ARC)
    assert task.aspects["function"].text_column == "citation_context"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        *[(name, i) for i, name in enumerate(ACL_ARC)],
        ("Background", 0),  # the original release's names
        ("CompareOrContrast", 2),
        ("compares_contrasts", 2),
        ("Future", 5),
        ("6", 5),
    ],
)
def test_citation_function_gold_codecs(cell, expected):
    _, kind = _kind("citation_function", "function")
    assert kind.decode_gold(cell) == expected


def test_citation_function_answers_by_name_and_alias():
    _, kind = _kind("citation_function", "function")
    assert kind.parse(" compares_contrasts ") == 2 and kind.parse("CompareOrContrast") == 2
    assert kind.parse("COMPARES CONTRASTS") is None  # an underscore is not a space
    assert kind.parse("USES, EXTENDS") is None  # one category only


# ----------------------------------------------------------------------------- flourishing


def test_flourishing_is_the_papers_codebook():
    task, kind = _kind("flourishing", "flourishing")
    assert kind.categories == tuple(DIMENSIONS) and kind.levels == ("low", "medium", "high")
    assert task.aspects["flourishing"].text_column == "tweet_text"
    system, user = task.messages("flourishing", "x")
    assert system["content"].count("\n- ") >= 46  # the list is said once, in the system prompt
    assert "Happiness" not in user["content"]  # a few-shot example repeats the user prompt only


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("{ 'belonging to society' : 'high', 'expressing gratitude' : 'high' }",
         {"Belonging to society": "high", "Expressing gratitude": "high"}),
        ("{ 'financial/material worry' : 'low' }", {"Financial or material worry": "low"}),
        ("{ 'mastery (ability, capability)' : 'medium' }",
         {"Mastery (ability or capability)": "medium"}),
        ("{'Mastery ability or having capability': 'high'}",  # the paper's prompt's spelling
         {"Mastery (ability or capability)": "high"}),
        ("{ 'ptsd (post-traumatic stress disorder)' : 'high' }",
         {"PTSD (Post-traumatic stress disorder)": "high"}),
        ('{"Expressing empathy": "LOW", "Happiness": "Medium"}',
         {"Happiness": "medium", "Expressing empathy": "low"}),
        ("{}", {}),
        ({"charitable giving/helping": "high"}, {"Charitable giving/helping": "high"}),
    ],
)  # fmt: skip
def test_flourishing_gold_codecs(cell, expected):
    _, kind = _kind("flourishing", "flourishing")
    value = kind.decode_gold(cell)
    assert kind.public(value) == expected
    assert list(kind.public(value)) == [d for d in DIMENSIONS if d in expected]  # codebook order


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("{ 'wellbeing' : 'high' }", "unknown dimension 'wellbeing'"),
        ("{ 'happiness' : 'very high' }", "unknown level 'very high' for 'happiness'"),
        ("{ 'happiness' : 3 }", "unknown level 3"),
        ("{ 'financial/material worry' : 'low', 'Financial or material worry' : 'high' }",
         "coded twice"),
        ("{ 'happiness' : 'low', 'happiness' : 'high' }", "coded twice"),  # not the last one wins
        ('{"Happiness": "low", "Happiness": "low"}', "coded twice"),
        ("['happiness']", "expected a dict"),
        ("{ 'happiness' : 'high'", "expected a dict"),  # unclosed
    ],
)  # fmt: skip
def test_flourishing_refuses_what_it_cannot_read(cell, message):
    _, kind = _kind("flourishing", "flourishing")
    with pytest.raises(LabelError, match=message.replace("(", r"\(").replace("[", r"\[")):
        kind.decode_gold(cell)


def test_flourishing_answers_in_any_order_but_the_grammar_writes_codebook_order():
    """Readers accept the present dimensions in any order (a server's JSON object has none);
    the grammar writes them in codebook order, each once."""
    _, kind = _kind("flourishing", "flourishing")
    constraint = Constraint.answer(kind)
    ordered = '{"Happiness": "high", "Anxiety": "low"}'
    swapped = '{"Anxiety": "low", "Happiness": "high"}'
    assert kind.parse(ordered) == kind.parse(swapped)
    assert check(constraint, f"<think>x</think><label>{ordered}</label>")
    assert not check(constraint, f"<think>x</think><label>{swapped}</label>")
    assert kind.parse("{'happiness': 'high'}") == kind.parse('{"Happiness": "high"}')
    assert not check(constraint, "<think>x</think><label>{'Happiness': 'high'}</label>")


def test_flourishing_levels_are_ordered_and_absent_is_not_one():
    _, kind = _kind("flourishing", "flourishing")
    value = kind.decode_gold("{ 'happiness' : 'low', 'anxiety' : 'medium', 'vitality' : 'high' }")
    by_name = dict(zip(DIMENSIONS, value, strict=True))
    assert (by_name["Happiness"], by_name["Anxiety"], by_name["Vitality"]) == (1, 2, 3)
    assert sum(v == 0 for v in value) == 43
    assert kind.counts(value)["Anxiety"] == 1 and kind.counts(value)["Suffering"] == 0


def test_every_combination_of_two_dimensions_keeps_the_grammar():
    """Pairs across the whole list (a dimension's name is never a prefix problem for another):
    rendered, checked and read back."""
    task, kind = _kind("flourishing", "flourishing")
    constraint = Constraint.answer(kind)
    for i, j in itertools.combinations(range(kind.n), 2):
        value = tuple(3 if k in (i, j) else 0 for k in range(kind.n))
        text = task.completion("", value, "flourishing")
        assert check(constraint, text), text
        assert read_answer(text, kind).value == value
