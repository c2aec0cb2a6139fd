"""Label codecs: one-hot strings, human code lists and real lists, to ``list[int]``.

Never uses ``eval``: one-hot strings go through `ast.literal_eval` on a bounded,
character-checked string.

>>> decode_label("[1, 0, 1, 0, 0]", "onehot", 5)
[1, 0, 1, 0, 0]
>>> decode_label("1, 3", "codes", 5, {"1": 0, "3": 2})
[1, 0, 1, 0, 0]
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any, Literal

Codec = Literal["auto", "onehot", "codes", "list"]

_CODES = re.compile(r"^\s*\d+(\s*[,;/ ]\s*\d+)*\s*$")


class LabelError(ValueError):
    """A label that its codec cannot read; the message says why."""


def parse_onehot(text: str, n: int) -> list[int] | None:
    """The one-hot rule: ``ast.literal_eval`` of the stripped text gives a list of
    exactly ``n`` ints, each 0 or 1. Booleans, floats, strings and tuples are not valid.

    Returns None for anything else. Total: never raises. The answer grammar uses a fast path
    (`llmscisci_cfg.task.answer.parse_label`) proven equal to this by a property test.
    """
    if not isinstance(text, str):
        return None
    try:
        value = ast.literal_eval(text.strip())
    except Exception:  # SyntaxError, ValueError (NUL bytes), MemoryError, RecursionError, ...
        return None
    return check_onehot(value, n)


def check_onehot(value: Any, n: int) -> list[int] | None:
    """``value`` as a list of ``n`` 0/1 ints, or None. Booleans and floats are not ints here."""
    if type(value) is not list or len(value) != n:
        return None
    if any(type(v) is not int or v not in (0, 1) for v in value):
        return None
    return list(value)


def decode_label(
    value: Any, codec: Codec, n: int, codes: Mapping[str, int] | None = None
) -> list[int]:
    """Decode one gold label to a one-hot list of length ``n``, or raise `LabelError`.

    ``codes`` maps a human code ("1") to a 0-based category index. ``auto`` picks the
    codec from the value's shape: a list, a bracketed string, else a code list.
    """
    if isinstance(value, int) and not isinstance(value, bool) and codec in ("auto", "codes"):
        value = str(value)  # a JSON/Parquet column of plain integer codes, e.g. 3
    if codec == "auto":
        codec = _guess(value)
    if codec == "list":
        if isinstance(value, tuple):
            value = list(value)
        # numpy arrays and pyarrow lists arrive as lists of ints from `datasets`
        out = check_onehot(value, n)
        if out is None:
            raise LabelError(f"expected a list of {n} zeros and ones, got {shown(value)}")
        return out
    if not isinstance(value, str):
        raise LabelError(
            f"expected text for codec {codec!r}, got {type(value).__name__} {shown(value)}"
        )
    if codec == "onehot":
        out = parse_onehot(value, n)
        if out is None:
            raise LabelError(
                f"expected a one-hot list of {n} zeros and ones like '[1, 0, 1, 0, 0]', got "
                f"{shown(value)}"
            )
        return out
    return _decode_codes(value, n, codes)


def _guess(value: Any) -> Codec:
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, str) and value.strip().startswith("["):
        return "onehot"
    return "codes"


def _decode_codes(text: str, n: int, codes: Mapping[str, int] | None) -> list[int]:
    if not _CODES.match(text):
        raise LabelError(f"expected category codes like '1, 3', got {shown(text)}")
    mapping = codes if codes is not None else {str(i + 1): i for i in range(n)}
    out = [0] * n
    for code in re.findall(r"\d+", text):
        key = code.lstrip("0") or "0"  # "03" is code 3; no int() of a 5,000-digit string
        if key not in mapping:
            raise LabelError(
                f"unknown category code {shown(code)}; known codes: {', '.join(sorted(mapping))}"
            )
        out[mapping[key]] = 1
    return out


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about a user's cell."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def encode_onehot(label: list[int]) -> str:
    """The canonical text form used in completions: ``[1, 0, 1, 0, 0]``."""
    return "[" + ", ".join(str(int(v)) for v in label) + "]"
