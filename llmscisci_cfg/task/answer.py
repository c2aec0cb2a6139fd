"""The task's answer format: ``<think>…</think>`` then ``<label>[1, 0, 1, 0, 0]</label>``.

This module is the grammar of the answer; the rewards, the metrics and the task's own template
check import it from here, so a task with another answer format is a change in ``task/`` only.

Definitions (the research's, with the choices its text leaves open made explicit):

- **Format match**: the completion matches ``.*<think>.*?</think>\\s*<label>.*?</label>.*``
  (dot matches newline, tags case-sensitive). Decided here with ``str.find`` and one small
  regex, equal to that regex (`FORMAT_RE`) on every string (tested with hypothesis), without
  its quadratic backtracking.
- **Label text**: the stripped text after the last ``<label>``, up to the next ``</label>``.
  When no ``</label>`` follows, it runs to the end of the text (the block is *open*); the
  ``hamming`` reward and the metrics need a closed block. No ``<label>`` at all: no label text.
- **Valid one-hot**: the label text parses with ``ast.literal_eval`` (never ``eval``) as a
  list of exactly ``n`` ints, each 0 or 1; booleans, floats, strings, tuples are not valid.
  A table of canonical spellings and one regex decide the common cases without parsing.
- **Label constraints** (off by default): a task may refuse some valid one-hots, e.g. the
  all-zero answer (`llmscisci_cfg.task.constraints`); given a rule, a label that breaks it
  parses as None, exactly like one that is not a valid one-hot.
- **Think text**: the block the format regex captures in
  ``.*<think>(.*?)</think>\\s*<label>.*?</label>.*``, stripped.

Completions arrive as strings or chat message lists; every function here is total.

>>> parse_completion("<think>x</think><label>[1, 0, 0]</label>", 3)
(True, [1, 0, 0])
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.task.labels import parse_onehot

if TYPE_CHECKING:
    from llmscisci_cfg.task.constraints import LabelRule

#: The format regex of the research, for reference; `format_match` equals it on every string.
FORMAT_RE = re.compile(r".*<think>.*?</think>\s*<label>.*?</label>.*", re.DOTALL)
_THINK, _LABEL, _LABEL_END = "<think>", "<label>", "</label>"
_CLOSE_THINK_THEN_LABEL = re.compile(r"</think>\s*<label>")
# A bracketed list of plain decimal numbers with ASCII spaces/tabs/newlines only; whatever
# else the label holds goes to `ast.literal_eval`.
_SIMPLE_LIST = re.compile(
    r"\[[ \t\n]*(?:[0-9]+[ \t\n]*(?:,[ \t\n]*[0-9]+[ \t\n]*)*(?:,[ \t\n]*)?)?\]"
)
_DIGITS = re.compile(r"[0-9]+")
_ZERO_OR_ONE = re.compile(r"0+|1")
_CANONICAL: dict[int, dict[str, list[int]]] = {}


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the assistant contents of a message list.

    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    """
    if type(completion) is str:
        return completion
    if type(completion) is list and len(completion) == 1:  # TRL's chat completion, fast path
        message = completion[0]
        if type(message) is dict and message.get("role") == "assistant":
            content = message.get("content")
            if type(content) is str:
                return content
    if isinstance(completion, Mapping):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return ""
    parts = []
    for message in completion:
        if isinstance(message, Mapping) and message.get("role", "assistant") == "assistant":
            parts.append(_content_text(message.get("content")))
    return "".join(parts)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}]
        return "".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def format_match(text: str) -> bool:
    """Whether ``text`` matches the format regex, without its quadratic backtracking."""
    start = text.find(_THINK)
    if start < 0:
        return False
    m = _CLOSE_THINK_THEN_LABEL.search(text, start + len(_THINK))
    return m is not None and text.find(_LABEL_END, m.end()) >= 0


def label_block(text: str) -> tuple[str | None, bool]:
    """``(label text, closed)``: the stripped text after the last ``<label>``; see module doc.

    >>> label_block("<label> [1] </label> <label>[0, 1")
    ('[0, 1', False)
    """
    start = text.rfind(_LABEL)
    if start < 0:
        return None, False
    start += len(_LABEL)
    end = text.find(_LABEL_END, start)
    if end < 0:
        return text[start:].strip(), False
    return text[start:end].strip(), True


def think_text(text: str) -> str | None:
    """The stripped think block that the format regex captures, or None without a format match."""
    last_close = text.rfind(_LABEL_END)
    good = [
        m.start()
        for m in _CLOSE_THINK_THEN_LABEL.finditer(text)
        if m.end() <= last_close  # a </label> follows this block's <label>
    ]
    if not good:
        return None
    start = text.rfind(_THINK, 0, good[-1])  # greedy `.*`: the last <think> that still fits
    if start < 0:
        return None
    start += len(_THINK)
    end = next(j for j in good if j >= start)  # lazy `.*?`: the first good </think>
    return text[start:end].strip()


def parse_label(label: str | None, n: int) -> list[int] | None:
    """``label`` as a valid one-hot of ``n`` categories, or None. Equal to `literal_onehot`."""
    if label is None or n <= 0:
        return None
    known = canonical(n).get(label)
    if known is not None:
        return list(known)
    if _SIMPLE_LIST.fullmatch(label):
        digits = _DIGITS.findall(label)
        if len(digits) != n or not all(_ZERO_OR_ONE.fullmatch(d) for d in digits):
            return None  # wrong length, a value other than 0/1, or a leading zero (SyntaxError)
        return [1 if d == "1" else 0 for d in digits]
    if "[" not in label:
        return None  # no list display, so no list
    return literal_onehot(label, n)


def literal_onehot(label: str, n: int) -> list[int] | None:
    """The reference definition: ``ast.literal_eval``, then exactly ``n`` ints in {0, 1}."""
    return parse_onehot(label, n)


def canonical(n: int) -> dict[str, list[int]]:
    """``"[1, 0, 1]"`` and ``"[1,0,1]"`` spellings of every one-hot of length ``n`` (n ≤ 10)."""
    table = _CANONICAL.get(n)
    if table is None:
        table = {}
        if 0 < n <= 10:
            for bits in itertools.product((0, 1), repeat=n):
                for sep in (", ", ","):
                    table["[" + sep.join(map(str, bits)) + "]"] = list(bits)
        _CANONICAL[n] = table
    return table


def parse_completion(
    completion: Any, n: int, rule: LabelRule | None = None
) -> tuple[bool, list[int] | None]:
    """(format matches, parsed one-hot label or None) for one completion.

    The label is the text of the last ``<label>`` block, which must be closed by ``</label>``
    (as the ``hamming`` reward reads it), whatever the think block. Given a ``rule``, a label
    that breaks it is None too.

    >>> from llmscisci_cfg.task.constraints import LabelRule
    >>> parse_completion("<think>x</think><label>[0, 0, 0]</label>", 3, LabelRule(3, (), 1))
    (True, None)
    """
    text = completion_text(completion)
    label, closed = label_block(text)
    parsed = parse_label(label, n) if closed else None
    if parsed is not None and rule is not None and not rule.allows(parsed):
        parsed = None
    return format_match(text), parsed


def format_valid(completion: Any) -> bool:
    """Whether a completion matches the response format (the ``format`` reward's rule)."""
    return format_match(completion_text(completion))
