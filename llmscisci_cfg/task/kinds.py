"""Answer kinds: how one aspect's label is written, read, constrained and scored.

A task file declares its answer kind (``answer:``); each aspect then gets one of these frozen,
hashable objects (`TaskSpec.label_kind`), the single source of what a label may be:

==============  ======================================  =======================================
kind            label block text (what the model writes) value (what every reader gets)
==============  ======================================  =======================================
``single``      one category name: ``method``           the category's index (``int``)
``multi``       a one-hot list: ``[1, 0, 1, 0, 0]``      the list (``list[int]``; the research's
                                                        encoding of a set of categories)
``dimensions``  a JSON object of the present            one level per dimension, in codebook
                dimensions: ``{"happiness": "high"}``   order: 0 absent, k the k-th level
==============  ======================================  =======================================

Every kind has the same methods: `parse` (label text → value or None), `from_json` (the value
of the ``label`` key of the JSON answer form), `render` (value → label text, for SFT targets and
few-shot examples), `decode_gold` (a gold cell in any supported codec → value, or `LabelError`),
`lark` / `regex` / `json_schema` (the label as a grammar, for local constrained decoding, for
servers that take a regex, for servers that take a JSON schema: all three admit exactly the
same values), and `score` (the correctness reward: exact match, 1 − Hamming loss,
per-dimension agreement).

**Names** are matched case- and space-insensitively (``"Background  information"`` is
``background information``), and through the aspect's ``aliases``; a name that matches nothing
is never guessed: a gold cell with one is a `LabelError` (counted and reported by the data
stage), a model's answer with one is invalid.

>>> k = SingleLabel(("background", "method", "result"))
>>> k.parse(" Method "), k.render(2), k.score(1, 1)
(1, 'result', 1.0)
>>> d = DimensionLabel(("happiness", "anxiety"), ("low", "medium", "high"))
>>> d.parse('{"anxiety": "high"}'), d.render((1, 0))
((0, 3), '{"happiness": "low"}')
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llmscisci_cfg.task.answer import (
    completion_text,
    format_match,
    label_block,
    parse_label,
    think_text,
)
from llmscisci_cfg.task.constraints import LabelRule
from llmscisci_cfg.task.labels import (
    LabelError,
    check_onehot,
    decode_label,
    encode_onehot,
    parse_onehot,
    shown,
)

Kind = Literal["single", "multi", "dimensions"]
KINDS: tuple[str, ...] = ("single", "multi", "dimensions")
#: Above this many categories a multi-label JSON form is an array schema, not an enumeration.
ENUMERATE_UP_TO = 10
_SPACES = re.compile(r"\s+")


def norm(name: str) -> str:
    """A name as names are compared: case-folded, whitespace collapsed, stripped.

    >>> norm("  Background\\n Information ")
    'background information'
    """
    return _SPACES.sub(" ", str(name)).strip().casefold()


def rx(text: str) -> str:
    """``text`` as a regular expression matching it literally, escaping only what every regex
    dialect treats as special (servers' engines differ on escaped spaces and the like).

    >>> rx("[1, 0]")
    '\\[1, 0\\]'
    """
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def _lark_str(text: str) -> str:
    """``text`` as a lark string literal (JSON escapes are lark's too)."""
    return json.dumps(text, ensure_ascii=False)


def _lookup(names: Sequence[str], aliases: Sequence[tuple[str, int]]) -> dict[str, int]:
    table = {norm(n): i for i, n in enumerate(names)}
    for alias, index in aliases:
        table.setdefault(norm(alias), index)
    return table


def _literal(text: str, unique: bool = True) -> Any:
    """A JSON value, else a Python literal (``{'a': 'b'}``), else None; never ``eval``. With
    ``unique``, an object that names a key twice is None (JSON and Python would keep the last
    value silently: ``{"Happiness": "high", "Happiness": "low"}`` codes one dimension twice).
    """
    text = text.strip()
    if len(text) > 100_000:
        return None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys if unique else None)
    except ValueError:
        pass
    try:
        tree = ast.parse(text, mode="eval")
        if unique and any(isinstance(n, ast.Dict) and _repeats(n) for n in ast.walk(tree)):
            return None
        return ast.literal_eval(tree)
    except Exception:  # SyntaxError, ValueError, MemoryError, RecursionError
        return None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s object hook: a repeated key is an error, not a silent overwrite."""
    if len({key for key, _ in pairs}) != len(pairs):
        raise ValueError("a key repeats")
    return dict(pairs)


def _repeats(node: ast.Dict) -> bool:
    """Whether a Python dict literal names one constant key twice."""
    keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
    try:
        return len(set(keys)) != len(keys)
    except TypeError:  # an unhashable key: literal_eval refuses it anyway
        return False


@dataclass(frozen=True)
class SingleLabel:
    """Exactly one category, answered by its name."""

    categories: tuple[str, ...]
    codes: tuple[tuple[str, int], ...] = ()  # human code -> index
    aliases: tuple[tuple[str, int], ...] = ()
    kind: str = "single"

    @property
    def n(self) -> int:
        return len(self.categories)

    @property
    def _names(self) -> dict[str, int]:
        return _lookup(self.categories, self.aliases)

    def parse(self, text: str | None) -> int | None:
        """The category a label text names, or None (unknown, empty, several)."""
        if not isinstance(text, str):
            return None
        return self._names.get(norm(text.strip().strip("\"'`")))

    def from_json(self, value: Any) -> int | None:
        return self.parse(value) if isinstance(value, str) else None

    def render(self, value: int) -> str:
        return self.categories[value]

    def public(self, value: int) -> str:
        """The value as a prediction table shows it: the category's name."""
        return self.categories[value]

    def counts(self, value: int) -> dict[str, int]:
        """How often each category is named in ``value`` (frequency tables)."""
        return {c: int(i == value) for i, c in enumerate(self.categories)}

    def valid(self, value: Any) -> bool:
        return type(value) is int and 0 <= value < self.n

    def decode_gold(self, cell: Any, codec: str = "auto") -> int:
        """A name (or alias), a human code, or a one-hot list with exactly one 1."""
        if isinstance(cell, bool) or cell is None:
            raise LabelError(f"expected a category name, got {shown(cell)}")
        if isinstance(cell, int) or (isinstance(cell, str) and cell.strip().isdigit()):
            codes = dict(self.codes) or {str(i + 1): i for i in range(self.n)}
            key = str(cell).strip().lstrip("0") or "0"
            if key in codes:
                return codes[key]
            raise LabelError(f"unknown category code {shown(cell)}; known: {', '.join(codes)}")
        if isinstance(cell, (list, tuple)) or (isinstance(cell, str) and cell.strip()[:1] == "["):
            onehot = check_onehot(list(cell), self.n) if not isinstance(cell, str) else None
            onehot = onehot if onehot is not None else parse_onehot(str(cell), self.n)
            if onehot is not None and sum(onehot) == 1:
                return onehot.index(1)
            raise LabelError(f"expected one category, got {shown(cell)}")
        if not isinstance(cell, str):
            raise LabelError(f"expected a category name, got {type(cell).__name__}")
        found = self.parse(cell)
        if found is None:
            raise LabelError(
                f"unknown category {shown(cell)}; categories: {', '.join(self.categories)}"
            )
        return found

    def lark(self) -> list[str]:
        return ["label_value: " + " | ".join(_lark_str(c) for c in self.categories)]

    def regex(self) -> str:
        return "(?:" + "|".join(rx(c) for c in self.categories) + ")"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.categories)}

    def max_bytes(self) -> int:
        return max(len(c.encode()) for c in self.categories)

    def longest(self) -> int:
        return max(range(self.n), key=lambda i: len(self.categories[i].encode()))

    def example(self) -> int:
        return 0

    def score(self, gold: Any, pred: Any) -> float:
        """Exact match: 1.0 when the prediction is the gold category."""
        return 1.0 if pred is not None and pred == gold else 0.0


@dataclass(frozen=True)
class MultiLabel:
    """A set of categories, as the research writes it: a one-hot list in category order;
    ``rule``: the task's label constraints (exclusive categories, a minimum count)."""

    categories: tuple[str, ...]
    codes: tuple[tuple[str, int], ...] = ()
    aliases: tuple[tuple[str, int], ...] = ()
    rule: LabelRule | None = None
    kind: str = "multi"

    @classmethod
    def plain(cls, n: int, rule: LabelRule | None = None) -> MultiLabel:
        """``n`` anonymous categories (for tests and the research's rewards)."""
        return cls(tuple(f"category {i + 1}" for i in range(n)), rule=rule)

    @property
    def n(self) -> int:
        return len(self.categories)

    def parse(self, text: str | None) -> list[int] | None:
        value = parse_label(text, self.n)
        return value if value is None or self.rule is None or self.rule.allows(value) else None

    def from_json(self, value: Any) -> list[int] | None:
        found = check_onehot(value, self.n)
        return found if found is None or self.rule is None or self.rule.allows(found) else None

    def render(self, value: Sequence[int]) -> str:
        return encode_onehot(list(value))

    def public(self, value: Sequence[int]) -> list[int]:
        """The value as a prediction table shows it: the one-hot list."""
        return list(value)

    def counts(self, value: Sequence[int]) -> dict[str, int]:
        return {c: int(v) for c, v in zip(self.categories, value, strict=True)}

    def valid(self, value: Any) -> bool:
        return check_onehot(list(value) if isinstance(value, tuple) else value, self.n) is not None

    def decode_gold(self, cell: Any, codec: str = "auto") -> list[int]:
        """One-hot text or list, human codes (``"1, 3"``), or category names (a list of names,
        or names separated by ``;``)."""
        names = _names_of(cell)
        if names is not None and codec in ("auto", "names"):
            table = _lookup(self.categories, self.aliases)
            out = [0] * self.n
            for name in names:
                if norm(name) not in table:
                    raise LabelError(
                        f"unknown category {shown(name)}; categories: {', '.join(self.categories)}"
                    )
                out[table[norm(name)]] = 1
            return out
        codes = dict(self.codes) or None
        return decode_label(cell, codec if codec != "names" else "auto", self.n, codes)

    def lark(self) -> list[str]:
        n = self.n
        if self.rule is None:
            bits = "BIT" + (f' (", " BIT){{{n - 1}}}' if n > 1 else "")
            return [f'label_value: "[" {bits} "]"', "BIT: /[01]/"]
        return ['label_value: "[" labels "]"', *label_rules_lark(self.rule)]

    def allowed(self) -> list[list[int]]:
        """Every label the kind admits (``n`` ≤ `ENUMERATE_UP_TO`)."""
        import itertools

        every = [list(b) for b in itertools.product((0, 1), repeat=self.n)]
        return [b for b in every if self.rule is None or self.rule.allows(b)]

    def regex(self) -> str:
        if self.n <= ENUMERATE_UP_TO:
            return "(?:" + "|".join(rx(encode_onehot(b)) for b in self.allowed()) + ")"
        return r"\[[01]" + r"(?:, [01])" * (self.n - 1) + r"\]"

    def json_schema(self) -> dict[str, Any]:
        if self.n <= ENUMERATE_UP_TO:
            return {"enum": self.allowed()}
        return {
            "type": "array",
            "items": {"type": "integer", "enum": [0, 1]},
            "minItems": self.n,
            "maxItems": self.n,
        }

    def max_bytes(self) -> int:
        return 2 + self.n + 2 * (self.n - 1)

    def example(self) -> list[int]:
        n = self.n
        example = [1 if i in (0, 2) and n > 3 else 0 for i in range(n)]
        if not any(example):
            example[0] = 1
        if self.rule is not None and not self.rule.allows(example):
            allowed = [b for b in self.allowed() if any(b)] if n <= ENUMERATE_UP_TO else []
            example = allowed[0] if allowed else example
        return example

    def score(self, gold: Any, pred: Any) -> float:
        """1 − Hamming loss (the research's ``hamming`` reward on a parsed label)."""
        if pred is None or gold is None or len(pred) != len(gold) or not gold:
            return 0.0
        return 1.0 - sum(int(g != p) for g, p in zip(gold, pred, strict=True)) / len(gold)


@dataclass(frozen=True)
class DimensionLabel:
    """Each dimension absent or at one of the ordered ``levels``; answered as a JSON object of
    the present dimensions (in codebook order): ``{"happiness": "high", "anxiety": "low"}``."""

    categories: tuple[str, ...]  # the dimensions
    levels: tuple[str, ...]
    aliases: tuple[tuple[str, int], ...] = ()
    kind: str = "dimensions"

    @property
    def n(self) -> int:
        return len(self.categories)

    def _read(self, value: Any) -> tuple[int, ...] | None:
        """A mapping of dimension → level as the value tuple, or None if anything is unknown."""
        if not isinstance(value, Mapping):
            return None
        dims = _lookup(self.categories, self.aliases)
        levels = {norm(level): k + 1 for k, level in enumerate(self.levels)}
        out = [0] * self.n
        for key, level in value.items():
            if not isinstance(key, str) or not isinstance(level, str):
                return None
            i, k = dims.get(norm(key)), levels.get(norm(level))
            if i is None or k is None or out[i]:
                return None
            out[i] = k
        return tuple(out)

    def parse(self, text: str | None) -> tuple[int, ...] | None:
        if not isinstance(text, str) or not text.strip().startswith("{"):
            return None
        return self._read(_literal(text))

    def from_json(self, value: Any) -> tuple[int, ...] | None:
        return self._read(value)

    def render(self, value: Sequence[int]) -> str:
        return json.dumps(self.public(value), ensure_ascii=False)

    def public(self, value: Sequence[int]) -> dict[str, str]:
        """The value as a prediction table shows it: ``{dimension: level}`` of those present."""
        return {self.categories[i]: self.levels[k - 1] for i, k in enumerate(value) if k}

    def counts(self, value: Sequence[int]) -> dict[str, int]:
        """Whether each dimension is present."""
        return {c: int(k > 0) for c, k in zip(self.categories, value, strict=True)}

    def valid(self, value: Any) -> bool:
        return (
            isinstance(value, (list, tuple))
            and len(value) == self.n
            and all(type(k) is int and 0 <= k <= len(self.levels) for k in value)
        )

    def decode_gold(self, cell: Any, codec: str = "auto") -> tuple[int, ...]:
        """A dict, or a dict written as JSON or Python (``{ 'happiness' : 'high' }``); ``{}``
        codes no dimension. An empty cell is a `LabelError`, never a coding: in a CSV it is also
        how a missing value is written. An unknown dimension or level is a `LabelError`."""
        if isinstance(cell, (list, tuple)) and self.valid(tuple(cell)):
            return tuple(cell)
        value = cell
        if isinstance(cell, str):
            if not cell.strip():
                raise LabelError("the label is empty (write {} for a coding with no dimension)")
            value = _literal(cell)
            if value is None and isinstance(_literal(cell, unique=False), Mapping):
                raise LabelError(f"a dimension is coded twice in {shown(cell)}")
        if not isinstance(value, Mapping):
            raise LabelError(f"expected a dict of dimension: level, got {shown(cell)}")
        found = self._read(value)
        if found is None:
            dims = _lookup(self.categories, self.aliases)
            levels = {norm(level) for level in self.levels}
            for key, level in value.items():
                if not isinstance(key, str) or norm(key) not in dims:
                    raise LabelError(f"unknown dimension {shown(key)}")
                if not isinstance(level, str) or norm(level) not in levels:
                    raise LabelError(
                        f"unknown level {shown(level)} for {shown(key)}; levels: "
                        f"{', '.join(self.levels)}"
                    )
            raise LabelError(f"a dimension is coded twice in {shown(cell)}")
        return found

    def lark(self) -> list[str]:
        """``{}`` or the present dimensions in codebook order, each once."""
        d = self.n
        rules = [
            'label_value: "{" "}" | "{" f0 "}"',
            "lv: " + " | ".join(_lark_str(json.dumps(v, ensure_ascii=False)) for v in self.levels),
        ]
        for i, name in enumerate(self.categories):
            key = _lark_str(json.dumps(name, ensure_ascii=False) + ": ")
            rules.append(f"e{i}: {key} lv")
            rules.append(f"f{i}: e{i}" + (f" r{i + 1} | f{i + 1}" if i + 1 < d else ""))
            if i > 0:
                rules.append(f'r{i}: ("," " " e{i})?' + (f" r{i + 1}" if i + 1 < d else ""))
        return rules

    def regex(self) -> str:
        level = "(?:" + "|".join(rx(json.dumps(v, ensure_ascii=False)) for v in self.levels) + ")"
        entry = [rx(json.dumps(c, ensure_ascii=False) + ": ") + level for c in self.categories]
        firsts = [entry[i] + "".join(f"(?:, {e})?" for e in entry[i + 1 :]) for i in range(self.n)]
        return r"\{(?:" + "|".join(firsts) + r")?\}"

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                c: {"type": "string", "enum": list(self.levels)} for c in self.categories
            },
            "additionalProperties": False,
        }

    def max_bytes(self) -> int:
        return len(self.render(self.longest()).encode())

    def longest(self) -> tuple[int, ...]:
        widest = max(range(len(self.levels)), key=lambda k: len(self.levels[k].encode()))
        return (widest + 1,) * self.n

    def example(self) -> tuple[int, ...]:
        return tuple(len(self.levels) if i == 0 else 0 for i in range(self.n))

    def score(self, gold: Any, pred: Any) -> float:
        """Per-dimension agreement: the share of dimensions whose level (absent counting as a
        level) the prediction gets right."""
        if pred is None or gold is None or len(pred) != len(gold) or not gold:
            return 0.0
        return sum(int(g == p) for g, p in zip(gold, pred, strict=True)) / len(gold)


LabelKind = SingleLabel | MultiLabel | DimensionLabel


def label_rules_lark(rule: LabelRule) -> list[str]:
    """Lark rules whose start, ``labels``, is exactly the label lists ``rule`` allows (without
    the brackets): ``d, d, …, d``.

    One alternative per exclusive category, set alone (when ``min_positive`` ≤ 1); then a
    counter: ``p{i}_{c}`` writes positions i..n-1 having seen ``c`` ones (capped at
    ``min_positive``), exclusive positions are 0, and only states that can still reach
    ``min_positive`` ones are written. Single-character terminals, so no two overlap.

    >>> label_rules_lark(LabelRule(2, (1,), 1))
    ['labels: p0_0 | x1', 'x1: "0" ", " "1"', 'p0_0: "1" ", " p1_1', 'p1_1: "0"']
    """
    n, k = rule.n, rule.min_positive
    excluded = set(rule.exclusive)
    free_after = [sum(i not in excluded for i in range(j, n)) for j in range(n + 1)]

    def live(i: int, c: int) -> bool:
        return c + free_after[i] >= k

    alternatives = ["p0_0"] if live(0, 0) else []
    singles = []
    if k <= 1:
        for e in rule.exclusive:
            bits = ' ", " '.join('"1"' if i == e else '"0"' for i in range(n))
            alternatives.append(f"x{e}")
            singles.append(f"x{e}: {bits}")
    lines = [f"labels: {' | '.join(alternatives)}", *singles]
    todo, seen = [(0, 0)] if live(0, 0) else [], set()
    while todo:
        i, c = todo.pop(0)
        if (i, c) in seen:
            continue
        seen.add((i, c))
        options = []
        for bit in (0, 1) if i not in excluded else (0,):
            after = min(c + bit, k)
            if i == n - 1:
                if after >= k:
                    options.append(f'"{bit}"')
            elif live(i + 1, after):
                options.append(f'"{bit}" ", " p{i + 1}_{after}')
                todo.append((i + 1, after))
        lines.append(f"p{i}_{c}: {' | '.join(options)}")
    return lines


def _names_of(cell: Any) -> list[str] | None:
    """Category names in a gold cell (a list of strings, or text with ``;`` between names, or
    one name that is not a code or a one-hot list), else None."""
    if isinstance(cell, (list, tuple)) and cell and all(isinstance(v, str) for v in cell):
        return list(cell)
    if not isinstance(cell, str) or not cell.strip():
        return None
    text = cell.strip()
    if text[0] == "[":
        value = _literal(text)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        return None
    if re.fullmatch(r"[\d\s,;/]+", text):
        return None  # human codes
    return [part for part in (p.strip() for p in text.split(";")) if part]


def wire(kind: LabelKind) -> dict[str, Any]:
    """A label kind as JSON (the ``answer_grammar`` request field `llmscisci serve` reads)."""
    out: dict[str, Any] = {"kind": kind.kind, "categories": list(kind.categories)}
    if isinstance(kind, MultiLabel) and kind.rule is not None:
        out["exclusive"] = list(kind.rule.exclusive)
        out["min_positive"] = kind.rule.min_positive
    if isinstance(kind, DimensionLabel):
        out["levels"] = list(kind.levels)
    return out


#: Bounds of a label kind read from a request.
WIRE_LIMITS = {"categories": 512, "name": 256, "levels": 32}


def from_wire(data: Any) -> LabelKind:
    """`wire`'s inverse; a `ValueError` saying what is wrong with ``data``."""
    if not isinstance(data, Mapping):
        raise ValueError("must be an object")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    names = data.get("categories")
    if (
        not isinstance(names, list)
        or not 1 <= len(names) <= WIRE_LIMITS["categories"]
        or not all(isinstance(n, str) and 0 < len(n) <= WIRE_LIMITS["name"] for n in names)
        or len({norm(n) for n in names}) != len(names)
    ):
        raise ValueError(
            f"categories must be 1 to {WIRE_LIMITS['categories']} different non-empty names of "
            f"at most {WIRE_LIMITS['name']} characters"
        )
    allowed = {"kind", "categories"} | {
        "multi": {"exclusive", "min_positive"},
        "dimensions": {"levels"},
        "single": set(),
    }[kind]
    extra = sorted(set(data) - allowed)
    if extra:
        raise ValueError(f"unknown key(s) for kind {kind}: {', '.join(extra)}")
    if kind == "single":
        return SingleLabel(tuple(names))
    if kind == "dimensions":
        levels = data.get("levels")
        if (
            not isinstance(levels, list)
            or not 1 <= len(levels) <= WIRE_LIMITS["levels"]
            or not all(isinstance(v, str) and 0 < len(v) <= WIRE_LIMITS["name"] for v in levels)
            or len({norm(v) for v in levels}) != len(levels)
        ):
            raise ValueError("levels must be 1 to 32 different non-empty names")
        return DimensionLabel(tuple(names), tuple(levels))
    exclusive = data.get("exclusive", [])
    k = data.get("min_positive", 0)
    n = len(names)
    if (
        not isinstance(exclusive, list)
        or not all(type(i) is int and 0 <= i < n for i in exclusive)
        or len(set(exclusive)) != len(exclusive)
        or type(k) is not int
        or not 0 <= k <= n
        or (k > 1 and exclusive)
    ):
        raise ValueError("exclusive must be distinct category positions, min_positive 0..n")
    rule = LabelRule(n, tuple(exclusive), k) if exclusive or k else None
    return MultiLabel(tuple(names), rule=rule)


@dataclass(frozen=True)
class Answer:
    """One completion read: whether it has the answer's shape, the label value (None when
    missing or invalid), and the think text (None without a format match)."""

    format_ok: bool
    value: Any
    think: str | None


def read_answer(completion: Any, label: LabelKind) -> Answer:
    """A completion in the task's format (``<think>…</think><label>…</label>``, read as the
    rewards read it: the last closed label block) or in the JSON answer form that servers
    constrained by a JSON schema return (``{"think": …, "label": …}``).

    >>> read_answer("<think>x</think><label>[1, 0]</label>", MultiLabel.plain(2))
    Answer(format_ok=True, value=[1, 0], think='x')
    >>> read_answer('{"think": "x", "label": "b"}', SingleLabel(("a", "b")))
    Answer(format_ok=True, value=1, think='x')
    """
    text = completion_text(completion)
    if text.lstrip().startswith("{"):
        data = _literal(text) if len(text) <= 1_000_000 else None
        if isinstance(data, dict) and set(data) == {"think", "label"}:
            think = data["think"] if isinstance(data["think"], str) else None
            return Answer(think is not None, label.from_json(data["label"]), think)
        return Answer(False, None, None)
    block, closed = label_block(text)
    value = label.parse(block) if closed else None
    ok = format_match(text)
    return Answer(ok, value, think_text(text) if ok else None)
