"""The six built-in rewards of DESIGN.md ("Rewards"), exact, total and fast.

Definitions (DESIGN.md), with the two choices the text leaves open made explicit:

- **Format match**: the completion matches ``.*<think>.*?</think>\\s*<label>.*?</label>.*``
  (dot matches newline, tags case-sensitive). Decided here with ``str.find`` and one small
  regex, equal to that regex on every string (tested with hypothesis).
- **Label text**: the stripped text after the last ``<label>``, up to the next ``</label>``.
  When no ``</label>`` follows, it runs to the end of the text (the block is *open*);
  ``hamming`` needs a closed block. No ``<label>`` at all: no label text.
- **Valid one-hot**: the label text parses with ``ast.literal_eval`` (never ``eval``) as a
  list of exactly ``n`` ints, each 0 or 1; booleans, floats, strings, tuples are not valid.
  A table of canonical spellings and one regex decide the common cases without parsing.
- **Think text** (``cot_length``): the block the format regex captures in
  ``.*<think>(.*?)</think>\\s*<label>.*?</label>.*``, stripped.
- ``stepwise_label``'s "only 0s and 1s" needs at least one digit: ``[]`` earns nothing there.

Every reward has TRL's contract ``fn(completions, **kwargs) -> list[float]``; completions are
strings or chat message lists. None of them raises, whatever the text.

>>> stepwise_label(["<think>x</think><label>[1, 0]</label>"], num_categories=5)
[0.375]
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmscisci_cfg.task.labels import decode_label, parse_onehot

NumCategories = int | Mapping[str, int]
"""One category count, or one per aspect (read from each example's ``aspect``)."""

_THINK, _LABEL, _LABEL_END = "<think>", "<label>", "</label>"
_CLOSE_THINK_THEN_LABEL = re.compile(r"</think>\s*<label>")
# A bracketed list of plain decimal numbers with ASCII spaces/tabs/newlines only; whatever
# else the label holds goes to `ast.literal_eval`.
_SIMPLE_LIST = re.compile(
    r"\[[ \t\n]*(?:[0-9]+[ \t\n]*(?:,[ \t\n]*[0-9]+[ \t\n]*)*(?:,[ \t\n]*)?)?\]"
)
_DIGITS = re.compile(r"[0-9]+")
_ZERO_OR_ONE = re.compile(r"0+|1")
_STEP_STRIP = re.compile(r"[\[\],\s]+")
_ONLY_01 = re.compile(r"[01]+")
_CANONICAL: dict[int, dict[str, list[int]]] = {}


# ----------------------------------------------------------------------------- text helpers


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
    known = _canonical(n).get(label)
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


def _canonical(n: int) -> dict[str, list[int]]:
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


def stepwise_score(label: str | None, n: int) -> float:
    """``stepwise_label`` for a completion whose format matched, from its label text."""
    if not label:
        return 0.0
    if label in _canonical(n):
        return 1.0  # "[1, 0, 1, 0, 0]" earns every step
    score = 0.125
    if _ONLY_01.fullmatch(_STEP_STRIP.sub("", label)):
        score += 0.125
    if label[0] == "[" and label[-1] == "]":
        score += 0.125
    if parse_label(label, n) is not None:
        score += 0.625
    return score


def _per_row_n(num_categories: NumCategories, aspect: Sequence | None, size: int) -> list[int]:
    if isinstance(num_categories, int):
        return [num_categories] * size
    aspects = list(aspect) if aspect is not None else [None] * size
    return [num_categories.get(a, 0) if isinstance(a, str) else 0 for a in aspects]


# ----------------------------------------------------------------------------- the rewards


def format_reward(completions: Sequence, **kwargs: Any) -> list[float]:
    """1.0 when the completion has the ``<think>…</think> <label>…</label>`` format, else 0.0."""
    return [1.0 if format_match(completion_text(c)) else 0.0 for c in completions]


def label_valid(
    completions: Sequence, *, num_categories: NumCategories, **kwargs: Any
) -> list[float]:
    """0.5 when the format matches and the label text is a valid one-hot, else 0.0."""
    ns = _per_row_n(num_categories, kwargs.get("aspect"), len(completions))
    out = []
    for c, n in zip(completions, ns, strict=True):
        text = completion_text(c)
        ok = format_match(text) and parse_label(label_block(text)[0], n) is not None
        out.append(0.5 if ok else 0.0)
    return out


def stepwise_label(
    completions: Sequence, *, num_categories: NumCategories, **kwargs: Any
) -> list[float]:
    """Partial credit for the label: non-empty, only 0/1, bracketed, valid one-hot (needs format)."""
    ns = _per_row_n(num_categories, kwargs.get("aspect"), len(completions))
    out = []
    for c, n in zip(completions, ns, strict=True):
        text = completion_text(c)
        out.append(stepwise_score(label_block(text)[0], n) if format_match(text) else 0.0)
    return out


def hamming(
    completions: Sequence, *, gold: Sequence, num_categories: NumCategories, **kwargs: Any
) -> list[float]:
    """1 − Hamming loss against ``gold`` for a closed, valid label block; else 0.0.

    ``gold`` is one label per example in any codec (list, one-hot text, human codes);
    an unreadable gold scores 0.0.
    """
    ns = _per_row_n(num_categories, kwargs.get("aspect"), len(completions))
    golds = list(gold) if gold is not None else []
    out = []
    for i, (c, n) in enumerate(zip(completions, ns, strict=True)):
        label, closed = label_block(completion_text(c))
        pred = parse_label(label, n) if closed else None
        truth = _gold(golds[i], n) if pred is not None and i < len(golds) else None
        out.append(1.0 - sum(map(operator.ne, pred, truth)) / n if truth is not None else 0.0)
    return out


def _gold(value: Any, n: int) -> list[int] | None:
    if (
        type(value) is list
        and len(value) == n
        and all(type(v) is int and 0 <= v <= 1 for v in value)
    ):
        return value  # the built dataset's list[int]: no decoding needed
    if hasattr(value, "tolist"):  # numpy / pyarrow
        value = value.tolist()
    try:
        return decode_label(value, "auto", n)
    except Exception:
        return None


def cot_length(completions: Sequence, *, tokenizer: Any, **kwargs: Any) -> list[float]:
    """Tokens in the stripped think block when the format matches, else 0 (one tokenizer call)."""
    thinks = [think_text(completion_text(c)) for c in completions]
    return _token_counts(tokenizer, thinks)


def cond_cot_stepwise(
    completions: Sequence,
    *,
    tokenizer: Any,
    num_categories: NumCategories,
    alpha: float = 0.1,
    threshold: float = 1.0,
    **kwargs: Any,
) -> list[float]:
    """``stepwise + alpha·cot_length`` when ``stepwise ≥ threshold``, else ``stepwise``."""
    texts = [completion_text(c) for c in completions]
    steps = stepwise_label(texts, num_categories=num_categories, **kwargs)
    thinks = [think_text(t) if s >= threshold else None for t, s in zip(texts, steps, strict=True)]
    lengths = _token_counts(tokenizer, thinks)
    return [s + alpha * k if s >= threshold else s for s, k in zip(steps, lengths, strict=True)]


def _token_counts(tokenizer: Any, thinks: list[str | None]) -> list[float]:
    """Token counts of the non-None texts in one tokenizer call; None counts 0."""
    todo = [t for t in thinks if t is not None]
    counts = iter(count_tokens(tokenizer, todo) if todo else [])
    return [float(next(counts)) if t is not None else 0.0 for t in thinks]


def count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token count of each text, from one batched call of a Hugging Face-style tokenizer."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(x) for x in ids]


class WhitespaceTokenizer:
    """A stand-in tokenizer that counts whitespace-separated words (``rewards test`` fallback)."""

    name = "whitespace word count"

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict[str, list]:
        return {"input_ids": [t.split() for t in texts]}


RewardFunc = Callable[..., list[float]]
