"""Cleaning scraped report text: unicode, boilerplate, hyphenation, run-on sections, whitespace.

The report sections come from PDF scrapes (the MLRC "what was easy / difficult" cells): words
broken at line ends (``pre‐ trained``), curly quotes and ligatures, page headers and copyright
footers in mid-sentence, and cells that run on into the rest of the paper. `clean` repairs them
with five steps, each switched by a field of `CleanOptions`, applied in this order:

1. ``unicode``: invisible characters removed, hyphen/quote variants made ASCII, then NFKC
   (ligatures, non-breaking and other odd spaces, full-width forms).
2. ``strip_boilerplate``: drop lines that are page furniture (see `is_boilerplate`) or that
   repeat `REPEATED_LINE_MIN` times or more (running headers). Done before step 3, because a
   footer often sits inside a broken word: ``ImageNet‐`` / footer / ``1k``.
3. ``dehyphenate``: rejoin words broken at a line end or as ``pre‐ trained`` (see `dehyphenate`).
4. ``cut_at_heading``: end the section at the first later line that is a heading of the paper
   (`SECTION_HEADINGS`, a numbered heading, or ``CleanOptions.extra_headings``).
5. ``collapse_whitespace``: runs of spaces to one space, runs of blank lines to one newline,
   lines and text stripped.

``clean(clean(x)) == clean(x)``: the pipeline is repeated until the text stops changing. One
pass nearly always suffices; a second is needed only when joining a broken word creates a new
repeated line or heading. Pure Python (``re``, ``unicodedata``), no ML import.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

#: Lines (after stripping) that appear this many times or more in one text are running headers.
REPEATED_LINE_MIN = 3

#: Headings that end a section, matched case-insensitively at the start of a line, after an
#: optional section number (``6.4 ``). One-word headings must fill the line (``References``,
#: ``3 Results:``); longer ones may run into the paragraph (``Communication with original
#: authors We emailed…``), as the MLRC template prints them.
SECTION_HEADINGS: tuple[str, ...] = (
    "abstract",
    "reproducibility summary",
    "scope of reproducibility",
    "methodology",
    "results",
    "what was easy",
    "what was difficult",
    "communication with original authors",
    "introduction",
    "related work",
    "background",
    "methods",
    "experimental setup",
    "experiments",
    "discussion",
    "conclusion",
    "conclusions",
    "references",
    "bibliography",
    "acknowledgements",
    "acknowledgments",
    "appendix",
    "appendices",
    "supplementary material",
)


@dataclass(frozen=True)
class CleanOptions:
    """Which cleaning steps run (mirrored by the recipe section ``data.clean``).

    All steps are on by default, ``cut_at_heading`` included: in the MLRC data the
    "difficult" cells run on into the whole paper (median about 22,000 characters against a few
    hundred for the section itself), and uncut they are either dropped by the length filter or
    train the model on the paper's body. The cut never empties a section (a heading on the first
    line is kept) and only fires on lines that look like a heading; turn it off for text that
    is already one clean section.
    """

    #: NFKC; hyphen and quote variants to ASCII; ligatures, odd spaces, zero-width characters.
    unicode: bool = True
    #: Rejoin words broken at a line end or as "pre‐ trained"; keep "state-of-the-art", "GPT-2".
    dehyphenate: bool = True
    #: Drop copyright/licence/journal lines, page numbers and lines repeated 3+ times.
    strip_boilerplate: bool = True
    #: End the section at the next heading of the paper ("Communication with original authors").
    cut_at_heading: bool = True
    #: Runs of spaces to one space, runs of newlines to one newline, ends stripped.
    collapse_whitespace: bool = True
    #: More headings to cut at, besides `SECTION_HEADINGS` (case-insensitive, whole words).
    extra_headings: tuple[str, ...] = ()


#: The keys of `clean_report`'s counts, in the order the steps run.
COUNT_KEYS = (
    "chars_in",
    "chars_out",
    "unicode_chars",  # characters replaced or removed by the unicode step
    "boilerplate_lines",  # lines dropped as page furniture or running headers
    "boilerplate_chars",
    "hyphens_joined",  # "pre‐ trained" -> "pretrained"
    "hyphens_glued",  # "ResNet‐\n18" -> "ResNet-18" (hyphen kept, break removed)
    "cut_chars",  # characters after the first heading, dropped
    "whitespace_chars",  # characters removed by collapsing whitespace
)

_MAX_PASSES = 5


def options_of(spec: Any) -> CleanOptions | None:
    """A recipe's ``data.clean`` section as the cleaner's options; None reads text as written."""
    if spec is None:
        return None
    return CleanOptions(**spec.model_dump() | {"extra_headings": tuple(spec.extra_headings)})


def section_text(value: Any, options: CleanOptions | None) -> str:
    """A table cell as the section text every stage reads (training, eval and predict alike):
    None is empty, the text is stripped, then cleaned when ``options`` is given (the recipe's
    ``data.clean``; None leaves the text as written).

    >>> section_text("  pre‐ trained  ", None), section_text("  pre‐ trained  ", CleanOptions())
    ('pre‐ trained', 'pretrained')
    """
    return section_report(value, options)[0]


def section_report(value: Any, options: CleanOptions | None) -> tuple[str, dict[str, int] | None]:
    """`section_text` and, when it was cleaned, `clean_report`'s counts (None otherwise)."""
    text = "" if value is None else str(value).strip()
    if options is None or not text:
        return text, None
    cleaned, counts = clean_report(text, options)
    return cleaned.strip(), counts


def clean(text: str, options: CleanOptions | None = None) -> str:
    """The cleaned text.

    >>> clean("The code was pre‐ trained on “ImageNet‐\\n1k”.\\nReferences\\n[1] A. Author")
    'The code was pretrained on "ImageNet-1k".'
    """
    return clean_report(text, options)[0]


def clean_report(text: str, options: CleanOptions | None = None) -> tuple[str, dict[str, int]]:
    """The cleaned text and what each step changed (`COUNT_KEYS`, summed over passes)."""
    options = options or CleanOptions()
    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts["chars_in"] = len(text)
    for _ in range(_MAX_PASSES):
        new = _one_pass(text, options, counts)
        if new == text:
            break
        text = new
    counts["chars_out"] = len(text)
    return text, counts


def _one_pass(text: str, options: CleanOptions, counts: dict[str, int]) -> str:
    if options.unicode:
        text, n = normalize_unicode(text)
        counts["unicode_chars"] += n
    if options.strip_boilerplate:
        before = len(text)
        text, n = strip_boilerplate(text)
        counts["boilerplate_lines"] += n
        counts["boilerplate_chars"] += before - len(text)
    if options.dehyphenate:
        text, joined, glued = dehyphenate(text)
        counts["hyphens_joined"] += joined
        counts["hyphens_glued"] += glued
    if options.cut_at_heading:
        before = len(text)
        text = cut_at_heading(text, options.extra_headings)
        counts["cut_chars"] += before - len(text)
    if options.collapse_whitespace:
        before = len(text)
        text = collapse_whitespace(text)
        counts["whitespace_chars"] += before - len(text)
    return text


# --- 1. unicode ----------------------------------------------------------------------------

# Zero-width space, word joiner, BOM and soft hyphen go. The zero-width (non-)joiners U+200C/D
# stay: they carry meaning in Persian and Indic scripts and in emoji.
_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad]")
_ASCII = str.maketrans(
    {
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2212": "-",  # minus sign
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u02bc": "'",  # modifier letter apostrophe, scraped for ’
        "\u02bb": "'",  # modifier letter turned comma, scraped for ‘
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
    }
)
# Figure and en dashes are hyphens only between two word characters ("1–2", "ImageNet–1k");
# elsewhere (" – ") they are dashes and stay.
_DASH_AS_HYPHEN = re.compile(r"[\u2012\u2013](?<=\w.)(?=\w)")  # dash first: fast scan


def normalize_unicode(text: str) -> tuple[str, int]:
    """Invisible characters removed, hyphens and quotes ASCII, NFKC; and how many characters
    were replaced or removed.

    >>> normalize_unicode("“ﬁne‐tuned”\u00a0model")
    ('"fine-tuned" model', 5)
    """
    out = _to_ascii(unicodedata.normalize("NFKC", _to_ascii(text)))
    if out == text:
        return out, 0
    # NFKC may split or compose characters; count the ones that were not already normal
    changed = len(_INVISIBLE.findall(text)) + len(_DASH_AS_HYPHEN.findall(text))
    changed += sum(
        1
        for ch in _NON_ASCII.findall(text)
        if ch in _ASCII_SOURCES or not unicodedata.is_normalized("NFKC", ch)
    )
    return out, changed


_ASCII_SOURCES = frozenset(chr(c) for c in _ASCII)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _to_ascii(text: str) -> str:
    text = _INVISIBLE.sub("", text).translate(_ASCII)
    return _DASH_AS_HYPHEN.sub("-", text)


# --- 2. boilerplate ------------------------------------------------------------------------

_BOILERPLATE = re.compile(
    "|".join(
        [
            r"(?:copyright\s*)?(?:©|\(c\))\s*(?:19|20)\d\d\b.*",  # Copyright © 2022 A. Author…
            r"copyright\s+(?:19|20)\d\d\b.*",
            r".*\breleased under (?:a|the) creative commons\b.*",
            r"correspondence should be addressed to\b.*",
            r"the authors have declared that no competing interests exist\b.*",
            r"open peer review is available at\b.*",
            # ReScience C 8.2 (#15) – Name 2022 12   (some scrapes print the journal as None)
            r"(?:rescience(?: c)?|none)\s+\d+(?:\.\d+)?\s+\(#\d+\)\s+[-–—].*\b(?:19|20)\d\d\s+\d{1,4}",
            r"(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?",  # a page number alone
            r"(?:doi:?\s*|https?://(?:dx\.)?doi\.org/)10\.\d{4,}/\S+",
            r"(?:received|accepted|published|revised)\s+\d{1,2}\s+[a-z]+\s+(?:19|20)\d\d",
            r"(?:edited|reviewed) by\b.{0,100}",
            r"\d{1,2}\s?https?://\S+",  # a footnote that is only a URL: "7https://github.com/…"
        ]
    ),
    re.IGNORECASE,
)
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")


def is_boilerplate(line: str) -> bool:
    """Whether one line (any surrounding whitespace) is journal or page furniture.

    >>> is_boilerplate("ReScience C 8.2 (#15) – Name 2022 12"), is_boilerplate("12")
    (True, True)
    >>> is_boilerplate("Copyright restrictions kept the data private.")
    False
    """
    return _BOILERPLATE.fullmatch(line.strip()) is not None


def _repeat_key(line: str) -> str | None:
    """What makes two lines "the same" running header: digits (page numbers) and spacing
    ignored. None for lines too short to tell (table cells, bullets)."""
    key = _SPACES.sub(" ", _DIGITS.sub("0", line.strip()))
    return key if len(_LETTER.findall(key)) >= 4 else None


def strip_boilerplate(text: str) -> tuple[str, int]:
    """The text without boilerplate or repeated lines, and how many lines were dropped."""
    lines = text.split("\n")
    keys = [_repeat_key(line) for line in lines]
    seen = Counter(k for k in keys if k is not None)
    kept = [
        line
        for line, key in zip(lines, keys, strict=True)
        if not (is_boilerplate(line) or (key is not None and seen[key] >= REPEATED_LINE_MIN))
    ]
    return "\n".join(kept), len(lines) - len(kept)


# --- 3. dehyphenate ------------------------------------------------------------------------

_BROKEN = re.compile(r"[-\u2010\u2011](?<=\w.)(\s+)(?=\w)")
_WORD_BEFORE = re.compile(r"([-\u2010\u2011]?)(\w+)$")
_WORD_AFTER = re.compile(r"\w+")
_COMPOUND = re.compile(r"\w+(?:[-\u2010\u2011]\w+)+")
#: "pre- and post-training", "JS- or CS-divergence": a suspended hyphen, left alone.
_SUSPENDED = frozenset({"and", "or"})


def dehyphenate(text: str) -> tuple[str, int, int]:
    """Words broken by a hyphen followed by whitespace, repaired; and how many were joined
    (hyphen dropped) and glued (hyphen kept, whitespace dropped).

    Joined when both letters around the hyphen are lowercase (``pre‐ trained``, ``vali-\\ndate``)
    unless the left part is itself a compound (``state-of-the- art``) or the text spells the
    word with a hyphen elsewhere and never without (``pre-trained``). Glued otherwise
    (``ResNet‐ 18``, ``GPT-\\n2``). A hyphen before "and"/"or" is suspended and stays.

    >>> dehyphenate("pre‐ trained ResNet‐ 18, state-of-the- art, pre- and post-hoc")
    ('pretrained ResNet-18, state-of-the-art, pre- and post-hoc', 1, 2)
    """
    matches = list(_BROKEN.finditer(text))
    if not matches:
        return text, 0, 0
    vocabulary: set[str] | None = None
    out, pos, joined, glued = [], 0, 0, 0
    for m in matches:
        before = _WORD_BEFORE.search(text, max(0, m.start() - 100), m.start())
        after = _WORD_AFTER.match(text, m.end())
        if before is None or after is None or after.group().lower() in _SUSPENDED:
            continue
        compound, left, right = before.group(1), before.group(2), after.group()
        out.append(text[pos : m.start()])
        pos = m.end()
        if left[-1].islower() and right[0].islower() and not compound:
            if vocabulary is None:
                vocabulary = _vocabulary(text)
            if not _spelled_with_hyphen(left, right, vocabulary):
                joined += 1
                continue
        out.append("-")
        glued += 1
    out.append(text[pos:])
    return "".join(out), joined, glued


def _vocabulary(text: str) -> set[str]:
    """Every lowercased word and hyphenated compound of the text (hyphens as ``-``)."""
    lowered = text.lower().replace("\u2010", "-").replace("\u2011", "-")
    return set(_WORD_AFTER.findall(lowered)) | set(_COMPOUND.findall(lowered))


def _spelled_with_hyphen(left: str, right: str, vocabulary: set[str]) -> bool:
    left, right = left.lower(), right.lower()
    return f"{left}-{right}" in vocabulary and left + right not in vocabulary


# --- 4. cut at heading ---------------------------------------------------------------------

_NUMBER = r"(?:[1-9]\d?(?:\.\d{1,2}){0,3}\.?\s+)?"
# A numbered heading filling a short line: "3 Results", "4.1 Model descriptions". The word
# after the number starts upper- then lowercase, so "4 GPUs" and "8 GB" are not headings, and
# "1. Item" (a list) is not either: a heading number has no dot after its last part.
_NUMBERED = re.compile(r"[1-9]\d?(?:\.\d{1,2}){0,3}\s+[^\W\d_][^\W\d_A-Z][^.;,!?]{0,60}")


@functools.lru_cache(maxsize=64)
def _heading_pattern(headings: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a list of headings, longest first, any spacing between their words."""
    names = sorted({" ".join(h.lower().split()) for h in headings if h.strip()}, key=len)
    alternatives = "|".join(r"\s+".join(map(re.escape, n.split())) for n in reversed(names))
    return re.compile(rf"{_NUMBER}(?P<name>{alternatives})(?P<rest>.*)", re.IGNORECASE)


_RUN_IN = re.compile(r"[.:]?\s+([^\W\d_])")


def is_heading(line: str, extra_headings: tuple[str, ...] = ()) -> bool:
    """Whether a line starts a new section of the paper.

    >>> [is_heading(s) for s in ("3 Results", "References", "Communication with original "
    ...  "authors We emailed them.", "Results were mixed.", "4 GPUs were needed")]
    [True, True, True, False, False]
    """
    line = line.strip()
    if _NUMBERED.fullmatch(line) and len(line.split()) <= 9:
        return True
    m = _heading_pattern(SECTION_HEADINGS + tuple(extra_headings)).match(line)
    if m is None:
        return False
    rest = m.group("rest")
    if rest.strip(" .:") == "":
        return True
    # a heading run into its paragraph: "Communication with original authors. We emailed…"
    run_in = _RUN_IN.match(rest)
    return bool(run_in and run_in.group(1).isupper() and len(m.group("name").split()) > 1)


def cut_at_heading(text: str, extra_headings: tuple[str, ...] = ()) -> str:
    """The text up to the first heading line that follows some non-heading text.

    Headings before any content (the section's own title) are kept, so the cut never empties
    a section.
    """
    lines = text.split("\n")
    seen_content = False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if is_heading(line, extra_headings):
            if seen_content:
                return "\n".join(lines[:i])
        else:
            seen_content = True
    return text


# --- 5. whitespace -------------------------------------------------------------------------

_INLINE_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{2,}")


def collapse_whitespace(text: str) -> str:
    """Runs of spaces/tabs to one space, lines stripped, runs of newlines to one, text stripped.

    >>> collapse_whitespace("  a \\t b \\r\\n\\n\\n c  ")
    'a b\\nc'
    """
    lines = (line.strip() for line in _INLINE_SPACE.sub(" ", text).split("\n"))
    return _BLANK_LINES.sub("\n", "\n".join(lines)).strip()
