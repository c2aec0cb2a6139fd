"""Label codecs: one-hot strings, human code lists, real lists — good and bad inputs."""

from __future__ import annotations

import pytest

from llmscisci_cfg.task.labels import LabelError, decode_label, encode_onehot, parse_onehot

# The ReScience human codes of the difficult aspect, and the other source's numbering
# (1 unclear notation, 2 missing algorithm, 3 insufficient math, 4 missing nuance, 5 none),
# expressed as code -> 0-based index in the task's category order.
RESCIENCE = {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4}
ALTERNATIVE = {"1": 2, "2": 0, "3": 3, "4": 1, "5": 4}


@pytest.mark.parametrize(
    ("value", "codec", "codes", "expected"),
    [
        ("[1, 0, 1, 0, 0]", "onehot", None, [1, 0, 1, 0, 0]),
        ("  [0,0,0,0,1] ", "onehot", None, [0, 0, 0, 0, 1]),
        ("[1, 0, 1, 0, 0]", "auto", None, [1, 0, 1, 0, 0]),
        ("1, 3", "codes", RESCIENCE, [1, 0, 1, 0, 0]),
        ("3", "codes", RESCIENCE, [0, 0, 1, 0, 0]),
        ("1;3", "codes", RESCIENCE, [1, 0, 1, 0, 0]),
        ("1, 3", "auto", RESCIENCE, [1, 0, 1, 0, 0]),
        ("01", "codes", RESCIENCE, [1, 0, 0, 0, 0]),
        ("1, 3", "codes", ALTERNATIVE, [0, 0, 1, 1, 0]),
        ("2, 4", "codes", ALTERNATIVE, [1, 1, 0, 0, 0]),
        ("5", "codes", None, [0, 0, 0, 0, 1]),
        ([1, 0, 1, 0, 0], "list", None, [1, 0, 1, 0, 0]),
        ((0, 1, 0, 0, 0), "list", None, [0, 1, 0, 0, 0]),
        ([0, 0, 0, 0, 1], "auto", None, [0, 0, 0, 0, 1]),
        (3, "codes", RESCIENCE, [0, 0, 1, 0, 0]),
        (4, "auto", ALTERNATIVE, [0, 1, 0, 0, 0]),
    ],
)
def test_decode_good(value, codec, codes, expected):
    assert decode_label(value, codec, 5, codes) == expected


@pytest.mark.parametrize(
    ("value", "codec", "codes", "needle"),
    [
        ("[1, 0, 1, 0]", "onehot", None, "one-hot list of 5"),
        ("[1, 0, 2, 0, 0]", "onehot", None, "one-hot"),
        ("[True, 0, 1, 0, 0]", "onehot", None, "one-hot"),
        ("[1.0, 0, 1, 0, 0]", "onehot", None, "one-hot"),
        ("(1, 0, 1, 0, 0)", "onehot", None, "one-hot"),
        ("__import__('os')", "onehot", None, "one-hot"),
        ("[[1], 0, 1, 0, 0]", "onehot", None, "one-hot"),
        ("", "onehot", None, "one-hot"),
        ("6", "codes", RESCIENCE, "unknown category code '6'"),
        ("0", "codes", RESCIENCE, "unknown category code"),
        ("one, three", "codes", RESCIENCE, "expected category codes"),
        ("", "codes", RESCIENCE, "expected category codes"),
        ("1, 3", "list", None, "expected a list"),
        ([1, 0, 1], "list", None, "expected a list of 5"),
        ([True, False, False, False, False], "list", None, "expected a list"),
        ([1.0, 0, 0, 0, 0], "list", None, "expected a list"),
        (13, "codes", RESCIENCE, "unknown category code '13'"),
        (True, "codes", RESCIENCE, "expected text"),
        (None, "onehot", None, "expected text"),
    ],
)
def test_decode_bad(value, codec, codes, needle):
    with pytest.raises(LabelError, match=None) as info:
        decode_label(value, codec, 5, codes)
    assert needle in str(info.value)


def test_parse_onehot_is_total_on_hostile_text():
    assert parse_onehot("[" * 5000, 5) is None
    assert parse_onehot("9" * 2000, 5) is None
    assert parse_onehot("[1, 0, 1, 0, 0]", 5) == [1, 0, 1, 0, 0]


def test_encode_roundtrip():
    assert encode_onehot([1, 0, 1, 0, 0]) == "[1, 0, 1, 0, 0]"
    assert parse_onehot(encode_onehot([0, 1, 1, 0, 0]), 5) == [0, 1, 1, 0, 0]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("7" * 5000, "unknown category code '777"),
        ("[" + "1" * 5000 + ", 0, 0, 0, 0]", "expected a one-hot list"),
        ("x" * 100_000, "expected category codes"),
    ],
)
def test_huge_label_cells_are_refused_and_shown_cut(value, needle):
    """A 5,000-digit code never reaches int() (Python's digit limit), and a 100 KB cell is
    not echoed whole."""
    with pytest.raises(LabelError) as info:
        decode_label(value, "auto", 5)
    assert needle in str(info.value) and len(str(info.value)) < 200


def test_a_huge_code_with_leading_zeros_is_its_small_code():
    assert decode_label("1, " + "0" * 4999 + "2", "codes", 5) == [1, 1, 0, 0, 0]
