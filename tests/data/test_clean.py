"""Cleaning scraped report text: each step as input → expected tables, idempotence as a
property, and the real MLRC cells (skipped without ``../shared``)."""

from __future__ import annotations

import csv
import dataclasses
import doctest
import functools
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmscisci_cfg.data import clean as clean_module
from llmscisci_cfg.data.clean import (
    COUNT_KEYS,
    SECTION_HEADINGS,
    CleanOptions,
    clean,
    clean_report,
    is_boilerplate,
    is_heading,
)

STEPS = ("unicode", "dehyphenate", "strip_boilerplate", "cut_at_heading", "collapse_whitespace")
FOOTER = (
    "Copyright © 2022 A. Author et al., released under a Creative Commons Attribution 4.0 "
    "International license. Correspondence should be addressed to A. Author (a@example.org)"
)


def only(step: str, **extra) -> CleanOptions:
    """Options with one step on and every other off."""
    return CleanOptions(**{s: s == step for s in STEPS}, **extra)


def test_defaults_turn_every_step_on():
    assert all(getattr(CleanOptions(), s) for s in STEPS)
    assert CleanOptions().extra_headings == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        CleanOptions().unicode = False  # type: ignore[misc]


def test_all_steps_off_is_the_identity():
    text = "pre‐ trained  “x”\n\n12\nReferences\n"
    assert clean(text, CleanOptions(**dict.fromkeys(STEPS, False))) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("“double” and ‘single’ quotes", "\"double\" and 'single' quotes"),
        ("authorʼs ʻquotedʼ word", "author's 'quoted' word"),
        ("ﬁne-tuned ﬂow, eﬀort", "fine-tuned flow, effort"),
        ("non\u00a0breaking\u202fspaces", "non breaking spaces"),
        ("zero\u200bwidth\u2060 gone\ufeff, soft\u00adhyphen", "zerowidth gone, softhyphen"),
        ("pre‐trained non‑breaking −0.5", "pre-trained non-breaking -0.5"),
        ("pages 1–2, ImageNet–1k", "pages 1-2, ImageNet-1k"),  # en dash between words: hyphen
        ("a claim – and a dash — stay", "a claim – and a dash — stay"),  # dashes stay dashes
        ("ＧＰＴ－２ in full width", "GPT-2 in full width"),
        ("Zoë Müller, Ørsted, 王小明 and Đặng", "Zoë Müller, Ørsted, 王小明 and Đặng"),
        ("e\u0301 composes", "é composes"),
        ("👩\u200d💻 keeps its joiner", "👩\u200d💻 keeps its joiner"),
    ],
)
def test_unicode(text, expected):
    assert clean(text, only("unicode")) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("pre‐ trained", "pretrained"),
        ("pre- \ntrained", "pretrained"),
        ("made vali-\ndations slow", "made validations slow"),
        ("state-of-the-art", "state-of-the-art"),
        ("state-of-the- art", "state-of-the-art"),  # a compound broken at its own hyphen
        ("GPT-2", "GPT-2"),
        ("GPT- 2 and GPT-\n2", "GPT-2 and GPT-2"),  # not both lowercase: hyphen kept
        ("ResNet‐ 18 on CIFAR‐ 10", "ResNet-18 on CIFAR-10"),
        ("Fashion‐ MNIST", "Fashion-MNIST"),
        (
            "pre- and post-training, JS- or CS-divergence",
            "pre- and post-training, JS- or CS-divergence",
        ),
        ("mi‐ nor changes", "minor changes"),  # "nor" is not a suspension
        (
            "Pre-trained nets; we used pre‐ trained weights",
            "Pre-trained nets; we used pre-trained weights",
        ),
        ("pre‐ trained or pretrained", "pretrained or pretrained"),
        ("x - y and x -y", "x - y and x -y"),
        ("a hyphen at the very end-", "a hyphen at the very end-"),
        ("trailing hyphen- ", "trailing hyphen- "),
        ("naï‐ ve Müller- Lyer", "naïve Müller-Lyer"),
        ("中- 文", "中-文"),
    ],
)
def test_dehyphenate(text, expected):
    assert clean(text, only("dehyphenate")) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        (f"before\n{FOOTER}\nafter", "before\nafter"),
        ("before\nReScience C 8.2 (#15) – Author and Other 2022 12\nafter", "before\nafter"),
        ("before\nNone 8.2 (#15) – Author et al. 2022 3\nafter", "before\nafter"),
        ("before\n  12  \nafter", "before\nafter"),
        ("before\nCorrespondence should be addressed to A. Author\nafter", "before\nafter"),
        (
            "a\nDOI 10.5281/zenodo.1234567\nReceived 04 February 2022\nPublished 20 May 2022\nb",
            "a\nb",
        ),
        ("a\nEdited by A. Editor\nReviewed by Anonymous Reviewers\nb", "a\nb"),
        ("a\n7https://github.com/owner/repo\nb", "a\nb"),  # a footnote that is only a URL
        (
            "See https://github.com/owner/repo for the code.",
            "See https://github.com/owner/repo for the code.",
        ),
        (
            "Copyright restrictions kept the data private.",
            "Copyright restrictions kept the data private.",
        ),
        ("Results received 3 votes", "Results received 3 votes"),
        # a running header repeats (page numbers differ); twice is not enough
        ("Journal of Tests 1\na\nJournal of Tests 2\nb\nJournal of Tests 3", "a\nb"),
        ("Journal of Tests 1\na\nJournal of Tests 2", "Journal of Tests 1\na\nJournal of Tests 2"),
        ("Yes\nYes\nYes", "Yes\nYes\nYes"),  # too short to call a header
        (f"{FOOTER}\n12\nReScience C 8.2 (#15) – Author 2022 12", ""),  # only boilerplate
    ],
)
def test_strip_boilerplate(text, expected):
    assert clean(text, only("strip_boilerplate")) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("hard\nCommunication with original authors We emailed them.", "hard"),
        ("hard\nCommunication with original authors. We emailed them.", "hard"),
        ("hard\n6.4 Communication with original authors We emailed them.", "hard"),
        ("hard\n3 Results\nmore", "hard"),
        ("hard\n4.1 Model descriptions\nmore", "hard"),
        ("hard\n5 Discussion\nmore", "hard"),
        ("hard\nREFERENCES\n[1] A. Author", "hard"),
        ("hard\nAcknowledgements:\nthanks", "hard"),
        ("hard\n\nWhat was easy\neasy", "hard\n"),
        ("References\n[1] A. Author", "References\n[1] A. Author"),  # heading first: kept
        ("What was difficult\nslow code\n2 Introduction\nbody", "What was difficult\nslow code"),
        ("hard\nResults were mixed.", "hard\nResults were mixed."),
        ("hard\nResults We found", "hard\nResults We found"),  # one word runs into no text
        ("hard\n4 GPUs were needed", "hard\n4 GPUs were needed"),
        ("hard\n1. First item", "hard\n1. First item"),
        (
            "hard\n3 The model needed far more memory than the paper said it would",
            "hard\n3 The model needed far more memory than the paper said it would",
        ),
        ("hard\nEthical considerations\nmore", "hard\nEthical considerations\nmore"),
    ],
)
def test_cut_at_heading(text, expected):
    assert clean(text, only("cut_at_heading")) == expected


def test_cut_at_extra_headings():
    options = only("cut_at_heading", extra_headings=("Ethical considerations",))
    assert clean("hard\nEthical considerations\nmore", options) == "hard"
    assert is_heading("ETHICAL  CONSIDERATIONS", ("Ethical considerations",))


def test_heading_list_is_lowercase_and_unique():
    assert len(set(SECTION_HEADINGS)) == len(SECTION_HEADINGS)
    assert all(h == h.lower().strip() for h in SECTION_HEADINGS)
    assert all(is_heading(h.title()) for h in SECTION_HEADINGS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("   \n\n \t ", ""),
        ("a  b\t\tc", "a b c"),
        ("a\n\n\nb", "a\nb"),
        ("  a  \n  b  ", "a\nb"),
        ("a\r\nb", "a\nb"),
        ("王小明  Đặng", "王小明 Đặng"),
    ],
)
def test_collapse_whitespace(text, expected):
    assert clean(text, only("collapse_whitespace")) == expected


def test_docstring_examples():
    result = doctest.testmod(clean_module)
    assert result.attempted >= 7 and result.failed == 0


def test_is_boilerplate():
    assert is_boilerplate(FOOTER) and is_boilerplate(" 7 ") and is_boilerplate("Page 3 of 12")
    assert not is_boilerplate("We could not run 12 of the 40 experiments.")


# --- the whole pipeline ----------------------------------------------------------------------

CELL = (
    "The code was incom‐ plete and the “ImageNet‐\n"
    f"{FOOTER}\n"
    "ReScience C 8.2 (#15) – Author et al. 2022 1\n"
    "1k” split was missing,  so we re‐ trained the state‐of‐the‐art model.\n"
    "Communication with original authors We emailed the authors.\n"
    "ReScience C 8.2 (#15) – Author et al. 2022 2\n"
    "1 Introduction\n"
    "The rest of the paper."
)


def test_clean_a_run_on_cell():
    assert clean(CELL) == (
        'The code was incomplete and the "ImageNet-1k" split was missing, so we retrained '
        "the state-of-the-art model."
    )


def test_clean_report_counts_each_step():
    text, counts = clean_report(CELL)
    assert list(counts) == list(COUNT_KEYS)
    assert counts["chars_in"] == len(CELL) and counts["chars_out"] == len(text)
    assert counts["unicode_chars"] == 8  # six U+2010 hyphens, two curly quotes (dashes stay)
    assert counts["boilerplate_lines"] == 3  # the footer and two page headers, with newlines
    header = "ReScience C 8.2 (#15) – Author et al. 2022 1"
    assert counts["boilerplate_chars"] == len(FOOTER) + 1 + 2 * (len(header) + 1)
    assert (counts["hyphens_joined"], counts["hyphens_glued"]) == (2, 1)
    assert counts["cut_chars"] == len(
        "\nCommunication with original authors We emailed the authors.\n1 Introduction\n"
        "The rest of the paper."
    )
    assert counts["whitespace_chars"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        " \n ",
        f"{FOOTER}\nReScience C 8.2 (#15) – Author 2022 12\n3",
    ],
)
def test_nothing_left_is_empty(text):
    assert clean(text) == ""
    assert clean_report(text)[1]["chars_out"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "Zoë Ørsted and 王小明 found the code hard to run.",
        "数据集很大，训练需要三天。",
        "Đặng Văn Lâm: la reproduction était difficile.",
    ],
)
def test_non_ascii_text_survives(text):
    expected = text.replace("，", ",")  # NFKC folds full-width punctuation
    assert clean(text) == expected


# --- idempotence -----------------------------------------------------------------------------

FRAGMENTS = [
    "pre", "trained", "‐ ", "- ", "-", "–", "\n", " ", "  ", "\r\n", "\t", "GPT", "2", "and",
    "state-of-the-art", "References", "3 Results", "Results", "Communication with original authors",
    "Copyright © 2022 A", "ReScience C 8.2 (#1) – A 2022 1", "12", "“", "”", "ﬁ", "\u200b",
    "\u00a0", "中文", "é", "e\u0301", "Page header line", "x",
]  # fmt: skip
TEXTS = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40).map("".join),
)
OPTIONS = st.builds(
    CleanOptions, **{s: st.booleans() for s in STEPS}, extra_headings=st.just(("x",))
)


@settings(max_examples=400, deadline=None)
@given(text=TEXTS, options=OPTIONS)
def test_clean_is_idempotent(text, options):
    once = clean(text, options)
    assert clean(once, options) == once


@settings(max_examples=200, deadline=None)
@given(text=TEXTS)
def test_default_clean_leaves_no_scrape_artefacts(text):
    out = clean(text)
    assert "\u2010" not in out and "“" not in out and "ﬁ" not in out and "\u200b" not in out
    assert "  " not in out and "\n\n" not in out and out == out.strip()


# --- the real MLRC reports (skipped without ../shared) ---------------------------------------


#: A word still broken by a hyphen and a space (a suspended "pre- and post-" is fine).
BROKEN_WORD = re.compile(r"\w-\s(?!and\b|or\b)\w")


@functools.cache
def _mlrc_cells(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Per aspect, (raw, cleaned) for every non-empty cell."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        aspect: [(r[aspect], clean(r[aspect])) for r in rows if r[aspect].strip()]
        for aspect in ("easy", "difficult")
    }


@pytest.mark.parametrize("aspect", ["easy", "difficult"])
def test_mlrc_cells_get_shorter_and_never_empty(mlrc_csv, aspect):
    cells = _mlrc_cells(mlrc_csv)[aspect]
    assert len(cells) == 57
    for raw, cleaned in cells:
        assert cleaned, f"cleaning emptied a section: {raw[:80]!r}"
        assert len(cleaned) <= len(raw)
        assert "\u2010" not in cleaned and not BROKEN_WORD.search(cleaned), cleaned
        assert "Copyright" not in cleaned and "ReScience C" not in cleaned
        assert clean(cleaned) == cleaned


def test_mlrc_difficult_median_drops(mlrc_csv):
    cells = _mlrc_cells(mlrc_csv)["difficult"]
    raw = statistics.median(len(r) for r, _ in cells)
    cleaned = statistics.median(len(c) for _, c in cells)
    message = f"median 'difficult' length: raw {raw:.0f} -> cleaned {cleaned:.0f} characters"
    print(message)
    assert raw > 10_000 and cleaned < 1_000, message
