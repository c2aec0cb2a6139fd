"""The six built-in rewards and the answer grammar they read: input → expected tables and properties.

Gold is [1, 0, 1, 0, 0] unless a row says otherwise; cot_length counts whitespace words
(`WhitespaceTokenizer`) so the expected counts can be read off the input.
"""

from __future__ import annotations

import ast
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmscisci_cfg.rewards.builtin import (
    WhitespaceTokenizer,
    cond_cot_stepwise,
    cot_length,
    format_reward,
    hamming,
    label_valid,
    stepwise_label,
)
from llmscisci_cfg.task.answer import (
    completion_text,
    format_match,
    label_block,
    literal_onehot,
    parse_label,
    think_text,
)
from tests.rewards.conftest import kinds

GOLD = [1, 0, 1, 0, 0]
WS = WhitespaceTokenizer()


def w(label: str, think: str = "a") -> str:
    """A well-formed completion around ``label``."""
    return f"<think>{think}</think>\n<label>{label}</label>"


def score_all(text, gold=GOLD, n=5) -> tuple[float, ...]:
    """(format, label_valid, stepwise_label, hamming, cot_length, cond_cot_stepwise) of one text."""
    c = [text]
    return (
        format_reward(c)[0],
        label_valid(c, label_kind=kinds(n))[0],
        stepwise_label(c, label_kind=kinds(n))[0],
        hamming(c, gold=[gold], label_kind=kinds(n))[0],
        cot_length(c, tokenizer=WS)[0],
        cond_cot_stepwise(c, tokenizer=WS, label_kind=kinds(n), alpha=0.1, threshold=1.0)[0],
    )


LONG_THINK = "word " * 8000  # 40,000 characters

# case, completion, (format, label_valid, stepwise, hamming, cot_length, cond_cot_stepwise)
TABLE = [
    ("exact", w("[1, 0, 1, 0, 0]", "code public"), (1, 0.5, 1, 1.0, 2, 1.2)),
    ("one category wrong", w("[1, 0, 0, 0, 0]"), (1, 0.5, 1, 0.8, 1, 1.1)),
    ("all wrong", w("[0, 1, 0, 1, 1]"), (1, 0.5, 1, 0.0, 1, 1.1)),
    ("no spaces", w("[1,0,1,0,0]"), (1, 0.5, 1, 1.0, 1, 1.1)),
    (
        "newlines and padding",
        "<think>\n a b \n</think>\n\n<label>\n[ 1 , 0 , 1 , 0 , 0 ]\n</label>",
        (1, 0.5, 1, 1.0, 2, 1.2),
    ),
    ("empty text", "", (0, 0, 0, 0, 0, 0)),
    ("empty blocks", "<think></think><label></label>", (1, 0, 0, 0, 0, 0)),
    ("whitespace label", w("   \n "), (1, 0, 0, 0, 1, 0)),
    ("missing </label>", "<think>a</think><label>[1, 0, 1, 0, 0]", (0, 0, 0, 0, 0, 0)),
    ("missing </think>", "<think>a <label>[1, 0, 1, 0, 0]</label>", (0, 0, 0, 1.0, 0, 0)),
    ("missing <think>", "a</think><label>[1, 0, 1, 0, 0]</label>", (0, 0, 0, 1.0, 0, 0)),
    ("tags in wrong order", "<label>[1, 0, 1, 0, 0]</label><think>a</think>", (0, 0, 0, 1.0, 0, 0)),
    (
        "text between </think> and <label>",
        "<think>a</think> so: <label>[1, 0, 1, 0, 0]</label>",
        (0, 0, 0, 1.0, 0, 0),
    ),
    ("upper-case tags", "<THINK>a</THINK><LABEL>[1, 0, 1, 0, 0]</LABEL>", (0, 0, 0, 0, 0, 0)),
    (
        "upper-case label tag only",
        "<think>a</think><Label>[1, 0, 1, 0, 0]</Label>",
        (0, 0, 0, 0, 0, 0),
    ),
    (
        "several label blocks: last counts",
        w("[1, 0, 1, 0, 0]") + " or <label>[0, 1, 0, 0, 0]</label>",
        (1, 0.5, 1, 0.4, 1, 1.1),
    ),
    (
        "last label block invalid",
        w("[1, 0, 1, 0, 0]") + "<label>oops</label>",
        (1, 0, 0.125, 0, 1, 0.125),
    ),
    ("last label block open", w("[1, 0, 1, 0, 0]") + " <label>[0, 1", (1, 0, 0.25, 0, 1, 0.25)),
    ("4 elements", w("[1, 0, 1, 0]"), (1, 0, 0.375, 0, 1, 0.375)),
    ("6 elements", w("[1, 0, 1, 0, 0, 0]"), (1, 0, 0.375, 0, 1, 0.375)),
    ("value 2", w("[1, 0, 2, 0, 0]"), (1, 0, 0.25, 0, 1, 0.25)),
    ("floats", w("[1.0, 0.0, 1.0, 0.0, 0.0]"), (1, 0, 0.25, 0, 1, 0.25)),
    ("booleans", w("[True, False, True, False, False]"), (1, 0, 0.25, 0, 1, 0.25)),
    ("strings", w("['1', '0', '1', '0', '0']"), (1, 0, 0.25, 0, 1, 0.25)),
    ("tuple", w("(1, 0, 1, 0, 0)"), (1, 0, 0.125, 0, 1, 0.125)),
    ("bare digits (a tuple)", w("1, 0, 1, 0, 0"), (1, 0, 0.25, 0, 1, 0.25)),
    ("nested list", w("[[1, 0, 1, 0, 0]]"), (1, 0, 0.375, 0, 1, 0.375)),
    ("extra words in label", w("The answer is [1, 0, 1, 0, 0]"), (1, 0, 0.125, 0, 1, 0.125)),
    (
        "extra words around blocks",
        "Sure! " + w("[1, 0, 1, 0, 0]") + " Hope this helps.",
        (1, 0.5, 1, 1.0, 1, 1.1),
    ),
    ("trailing comma", w("[1, 0, 1, 0, 0,]"), (1, 0.5, 1, 1.0, 1, 1.1)),
    ("empty list", w("[]"), (1, 0, 0.25, 0, 1, 0.25)),
    ("leading zero (SyntaxError)", w("[01, 0, 1, 0, 0]"), (1, 0, 0.375, 0, 1, 0.375)),
    ("00 is the literal 0", w("[1, 0, 1, 00, 0]"), (1, 0.5, 1, 1.0, 1, 1.1)),
    ("unary plus parses", w("[+1, 0, 1, 0, 0]"), (1, 0.5, 0.875, 1.0, 1, 0.875)),
    ("comment after list parses", w("[1, 0, 1, 0, 0] # sure"), (1, 0.5, 0.75, 1.0, 1, 0.75)),
    (
        "__import__ in label",
        w("[__import__('os').system('exit 3'), 0, 1, 0, 0]"),
        (1, 0, 0.25, 0, 1, 0.25),
    ),
    ("full-width digits", w("[１, ０, １, ０, ０]"), (1, 0, 0.25, 0, 1, 0.25)),
    ("NUL byte in label", w("[1, 0, 1, 0, 0]\x00"), (1, 0, 0.125, 0, 1, 0.125)),
    ("NUL byte in think", w("[1, 0, 1, 0, 0]", "a\x00b c"), (1, 0.5, 1, 1.0, 2, 1.2)),
    (
        "40,000-character think block",
        w("[1, 0, 1, 0, 0]", LONG_THINK),
        (1, 0.5, 1, 1.0, 8000, 801.0),
    ),
    (
        "second think block is the captured one",
        "<think>x y</think> <think>z</think><label>[1, 0, 1, 0, 0]</label>",
        (1, 0.5, 1, 1.0, 1, 1.1),
    ),
]


@pytest.mark.parametrize("case,text,expected", TABLE, ids=[row[0] for row in TABLE])
def test_builtin_table(case, text, expected):
    assert score_all(text) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("case,text,expected", TABLE, ids=[row[0] for row in TABLE])
def test_message_list_equals_string(case, text, expected):
    as_messages = [{"role": "assistant", "content": text}]
    assert score_all(as_messages) == score_all(text)


def test_message_list_variants():
    text = w("[1, 0, 1, 0, 0]")
    split = [
        {"role": "assistant", "content": text[:10]},
        {"role": "assistant", "content": text[10:]},
    ]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
    with_tool = [
        {"role": "tool", "content": "<label>[0, 0, 0, 0, 1]</label>"},
        {"role": "assistant", "content": text},
    ]
    for completion in (
        split,
        parts,
        with_tool,
        {"role": "assistant", "content": text},
        (text and [{"content": text}]),
    ):
        assert completion_text(completion) == text
    for junk in (
        None,
        3,
        [None],
        [{"role": "assistant", "content": None}],
        [{"role": "user", "content": text}],
    ):
        assert completion_text(junk) == ""
        assert score_all(junk) == (0, 0, 0, 0, 0, 0)


def test_import_in_label_is_never_executed(tmp_path):
    marker = tmp_path / "hacked"
    label = f"[__import__('pathlib').Path({str(marker)!r}).touch(), 0, 1, 0, 0]"
    assert score_all(w(label))[:4] == (1, 0, 0.25, 0)
    assert not marker.exists()


# ----------------------------------------------------------------------------- reward hacking

HACKS = [
    # The research saw completions wrapped in chat special tokens or code fences. The format
    # regex allows any text around the blocks, so a well-formed answer inside a wrapper earns
    # full marks: the rewards do not penalise wrappers (documented here, not "fixed", because
    # the research defines the format with leading and trailing `.*`).
    (
        "chat special tokens",
        "<|im_start|>assistant\n" + w("[1, 0, 1, 0, 0]") + "<|im_end|>",
        (1, 0.5, 1, 1.0, 1, 1.1),
    ),
    ("code fence", "```\n" + w("[1, 0, 1, 0, 0]") + "\n```", (1, 0.5, 1, 1.0, 1, 1.1)),
    ("json code fence", "```json\n" + w("[1, 0, 1, 0, 0]") + "\n```", (1, 0.5, 1, 1.0, 1, 1.1)),
    # A fence *inside* the label is not a one-hot: only the non-empty step is earned.
    ("fence inside the label", w("```[1, 0, 1, 0, 0]```"), (1, 0, 0.125, 0, 1, 0.125)),
    # Special tokens inside the label break it too.
    ("special token inside the label", w("[1, 0, 1, 0, 0]<|im_end|>"), (1, 0, 0.125, 0, 1, 0.125)),
]


@pytest.mark.parametrize("case,text,expected", HACKS, ids=[row[0] for row in HACKS])
def test_reward_hacking_cases(case, text, expected):
    assert score_all(text) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- gold and categories

GOLDS = [
    ("list", [1, 0, 1, 0, 0], 1.0),
    ("one-hot text", "[1, 0, 1, 0, 0]", 1.0),
    ("human codes", "1, 3", 1.0),
    ("human codes, one off", "1", 0.8),
    ("tuple", (1, 0, 1, 0, 0), 1.0),
    ("None", None, 0.0),
    ("wrong length list", [1, 0, 1], 0.0),
    ("booleans", [True, False, True, False, False], 0.0),
    ("unknown code", "7", 0.0),
    ("garbage text", "yes", 0.0),
    ("an integer code", 3, 0.8),  # code 3 alone: one of five categories wrong
    ("a float", 3.0, 0.0),
    ("a dict", {"a": 1}, 0.0),
]


@pytest.mark.parametrize("case,gold,expected", GOLDS, ids=[row[0] for row in GOLDS])
def test_hamming_gold_codecs(case, gold, expected):
    assert hamming([w("[1, 0, 1, 0, 0]")], gold=[gold], label_kind=kinds(5)) == [
        pytest.approx(expected)
    ]


def test_hamming_gold_shorter_than_batch_scores_zero():
    assert hamming([w("[1, 0, 1, 0, 0]")] * 2, gold=[GOLD], label_kind=kinds(5)) == [1.0, 0.0]


def test_category_count_comes_from_the_task():
    three = w("[1, 0, 1]")
    assert label_valid([three], label_kind=kinds(3)) == [0.5]
    assert label_valid([three], label_kind=kinds(5)) == [0.0]
    assert stepwise_label([three], label_kind=kinds(3)) == [1.0]
    assert hamming([three], gold=[[1, 1, 1]], label_kind=kinds(3)) == [pytest.approx(2 / 3)]
    per_aspect = {"easy": 3, "difficult": 5}
    texts = [three, three, w("[1, 0, 1, 0, 0]")]
    aspects = ["easy", "difficult", "difficult"]
    assert label_valid(texts, label_kind=kinds(per_aspect), aspect=aspects) == [0.5, 0.0, 0.5]
    assert stepwise_label(texts, label_kind=kinds(per_aspect), aspect=aspects) == [1.0, 0.375, 1.0]
    assert hamming(
        texts, gold=[[1, 0, 1], GOLD, GOLD], label_kind=kinds(per_aspect), aspect=aspects
    ) == [1.0, 0.0, 1.0]


def test_cond_cot_stepwise_parameters():
    good, partial = w("[1, 0, 1, 0, 0]", "one two three four"), w("[1, 0]", "one two")
    texts = [good, partial]
    assert cond_cot_stepwise(texts, tokenizer=WS, label_kind=kinds(5)) == [
        pytest.approx(1.4),
        0.375,
    ]
    assert cond_cot_stepwise(texts, tokenizer=WS, label_kind=kinds(5), alpha=1.0) == [5.0, 0.375]
    assert cond_cot_stepwise(texts, tokenizer=WS, label_kind=kinds(5), threshold=0.3) == [
        pytest.approx(1.4),
        pytest.approx(0.575),
    ]
    assert cond_cot_stepwise(texts, tokenizer=WS, label_kind=kinds(5), alpha=0.0) == [1.0, 0.375]


class CountingTokenizer:
    """Records each call, to prove the batch is tokenized in one call."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts, add_special_tokens=True):
        self.calls.append((list(texts), add_special_tokens))
        return {"input_ids": [list(t) for t in texts]}  # one token per character


def test_cot_length_tokenizes_the_batch_once():
    tok = CountingTokenizer()
    texts = [w("[1, 0, 1, 0, 0]", " abc "), "no format", w("x", "de")]
    assert cot_length(texts, tokenizer=tok) == [3.0, 0.0, 2.0]
    assert tok.calls == [(["abc", "de"], False)]
    tok.calls.clear()
    assert cot_length(["nothing"], tokenizer=tok) == [0.0]
    assert tok.calls == []  # nothing to count, no call


def test_cot_length_with_a_real_tokenizer():
    tiny = pytest.importorskip("llmscisci_cfg.models.tiny")
    try:
        tok = tiny.load_tiny_tokenizer()
    except Exception as exc:  # the shipped tokenizer belongs to another area
        pytest.skip(f"tiny tokenizer unavailable: {exc}")
    think = "the code was public"
    expected = len(tok(think, add_special_tokens=False)["input_ids"])
    assert expected > 0
    assert cot_length([w("[1, 0, 1, 0, 0]", f"  {think}\n")], tokenizer=tok) == [float(expected)]


def test_rewards_return_one_float_per_completion():
    texts = [w("[1, 0, 1, 0, 0]"), "", w("[0, 1")]
    for out in (
        format_reward(texts),
        label_valid(texts, label_kind=kinds(5)),
        stepwise_label(texts, label_kind=kinds(5)),
        hamming(texts, gold=[GOLD] * 3, label_kind=kinds(5)),
        cot_length(texts, tokenizer=WS),
        cond_cot_stepwise(texts, tokenizer=WS, label_kind=kinds(5)),
    ):
        assert len(out) == 3 and all(type(v) is float for v in out)
    assert format_reward([]) == [] and cot_length([], tokenizer=WS) == []


# ----------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", (None, False)),
        ("<label> [1] </label>", ("[1]", True)),
        ("<label>a</label><label> b </label>", ("b", True)),
        ("<label>a</label><label> b", ("b", False)),
        ("<label>a<label>b</label>", ("b", True)),
        ("</label><label>", ("", False)),
    ],
)
def test_label_block(text, expected):
    assert label_block(text) == expected


# ----------------------------------------------------------------------------- properties

ATOMS = [
    "<think>",
    "</think>",
    "<label>",
    "</label>",
    "<THINK>",
    "<label",
    "</",
    ">",
    " ",
    "\n",
    "\t",
    "\u2003",
    "x",
    "[",
    "]",
    ",",
    "0",
    "1",
    "2",
    "00",
    "01",
    "1.0",
    "True",
    "(",
    ")",
    "#",
    "+",
    "-",
    "'",
    "\x00",
    "１",
    "[1, 0, 1, 0, 0]",
    "[1,0,1,0,0]",
    "_",
    "b",
    "\\\n",
]
tagged = st.lists(st.sampled_from(ATOMS), max_size=24).map("".join)
any_text = st.one_of(st.text(max_size=200), tagged)
LABEL_ATOMS = [
    "[",
    "]",
    ",",
    " ",
    "\n",
    "\t",
    "0",
    "1",
    "2",
    "00",
    "01",
    "+",
    "-",
    "_",
    "0b",
    "x",
    ".",
    "#",
    "(",
    ")",
    "'",
    "\x00",
    "１",
    "\r",
    "\f",
    "\v",
    "True",
    "[1, 0, 1, 0, 0]",
]
label_text = st.one_of(
    st.lists(st.sampled_from(LABEL_ATOMS), max_size=20).map("".join), st.text(max_size=40)
)

FORMAT_RE = re.compile(r".*<think>.*?</think>\s*<label>.*?</label>.*", re.DOTALL)
THINK_RE = re.compile(r".*<think>(.*?)</think>\s*<label>.*?</label>.*", re.DOTALL)
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ref_label_text(text: str) -> str | None:
    """The research's label text, the plain way."""
    if "<label>" not in text:
        return None
    return text.split("<label>")[-1].split("</label>")[0].strip()


def ref_valid(label: str, n: int) -> bool:
    try:
        value = ast.literal_eval(label)
    except Exception:
        return False
    return (
        type(value) is list
        and len(value) == n
        and all(type(v) is int and v in (0, 1) for v in value)
    )


def ref_stepwise(text: str, n: int) -> float:
    if not FORMAT_RE.match(text):
        return 0.0
    label = ref_label_text(text)
    score = 0.0
    if label:
        score += 0.125
    cleaned = re.sub(r"[\[\],\s]", "", label)
    if cleaned and set(cleaned) <= {"0", "1"}:
        score += 0.125
    if label.startswith("[") and label.endswith("]"):
        score += 0.125
    if ref_valid(label, n):
        score += 0.625
    return score


def ref_hamming(text: str, gold: list[int], n: int) -> float:
    if "<label>" not in text or "</label>" not in text.split("<label>")[-1]:
        return 0.0
    label = ref_label_text(text)
    if not ref_valid(label, n):
        return 0.0
    pred = ast.literal_eval(label)
    return 1.0 - sum(g != p for g, p in zip(gold, pred, strict=True)) / n


@FAST
@given(any_text)
def test_format_match_equals_the_regex(text):
    assert format_match(text) == bool(FORMAT_RE.match(text))


@FAST
@given(any_text)
def test_think_text_equals_the_regex_capture(text):
    m = THINK_RE.match(text)
    assert think_text(text) == (m.group(1).strip() if m else None)


@FAST
@given(label_text, st.sampled_from([1, 3, 5]))
def test_fast_one_hot_parse_equals_literal_eval(label, n):
    label = label.strip()
    expected = ref_valid(label, n)
    assert (parse_label(label, n) is not None) == expected
    assert (literal_onehot(label, n) is not None) == expected
    if expected:
        assert parse_label(label, n) == ast.literal_eval(label)


@FAST
@given(
    st.one_of(
        any_text, label_text.map(lambda s: w(s)), label_text.map(lambda s: w(s) + "<label>" + s)
    )
)
def test_rewards_equal_the_reference(text):
    assert stepwise_label([text], label_kind=kinds(5)) == [ref_stepwise(text, 5)]
    assert label_valid([text], label_kind=kinds(5)) == [
        0.5 if FORMAT_RE.match(text) and ref_valid(ref_label_text(text), 5) else 0.0
    ]
    assert format_reward([text]) == [1.0 if FORMAT_RE.match(text) else 0.0]
    assert hamming([text], gold=[GOLD], label_kind=kinds(5)) == [ref_hamming(text, GOLD, 5)]


@FAST
@given(st.one_of(any_text, label_text.map(lambda s: w(s, "a b"))), st.booleans())
def test_any_text_gets_a_float_in_range(text, as_messages):
    c = [[{"role": "assistant", "content": text}] if as_messages else text]
    fmt, valid, step, ham, cot, cond = score_all(c[0])
    assert fmt in (0.0, 1.0)
    assert valid in (0.0, 0.5)
    assert 0.0 <= step <= 1.0 and (step * 8).is_integer()
    assert 0.0 <= ham <= 1.0
    assert cot >= 0 and float(cot).is_integer()
    assert cond == (step + 0.1 * cot if step >= 1.0 else step)
    assert all(type(v) is float for v in (fmt, valid, step, ham, cot, cond))
