"""The task's answer grammar, pure (no torch, no transformers): what an answer may be.

A `Constraint` says what an answer must be: the task's label answer (`Constraint.think_label`)
or a JSON schema (`Constraint.json_schema`); `check` says whether a text satisfies it, and
`Constraint.grammar` gives the llguidance grammar that constrained decoding
(`llmscisci_cfg.models.structured`) masks logits with.

**Bounded free text.** An answer must fit in ``max_new_tokens`` even when the model never
chooses to stop, so every free part gets a bound computed from what the fixed parts may cost.
A token holds at least one byte, so fixed text costs at most its UTF-8 length in tokens (a tag
that is one added token costs 1); the model may spell fixed text in any tokenization the mask
allows, so this worst case, not the canonical tokenization, is what is subtracted.

- ``think_label``: the think block is a lark rule with llguidance's ``max_tokens`` set to
  ``max_new_tokens`` minus the fixed parts (and at most ``max_think_tokens``); when it is spent
  the grammar forces ``</think>`` and the label.

**Label constraints and kinds.** The label part is the aspect's answer kind
(`llmscisci_cfg.task.kinds`: one category name, a one-hot list that keeps the task's label
constraints, or an object of dimensions and levels), so a constrained answer is valid by
construction. The same constraint has a regex form (`Constraint.regex`) and a JSON form
(`Constraint.json_form`, ``{"think": …, "label": …}`` with the label's schema enumerating what
the grammar allows) for servers that take those instead of a grammar, and a wire form
(`Constraint.to_wire`) that `llmscisci serve` turns back into this grammar.

- ``json_schema``: JSON is compact (no free whitespace), arrays need ``maxItems``, integers
  bounds or an ``enum``; a string without ``maxLength`` gets ``maxLength = (max_new_tokens -
  fixed bytes) // (4 × number of such strings)``, 4 being the most bytes one character takes
  (``\\uXXXX`` escapes are turned off, so ``\\n`` and UTF-8 cost at most 4).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import llguidance

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.task.constraints import LabelRule
from llmscisci_cfg.task.kinds import LabelKind, MultiLabel, from_wire, read_answer, rx, wire

THINK, THINK_END, LABEL, LABEL_END = "<think>", "</think>", "<label>", "</label>"
#: Most bytes one JSON string character takes: 4-byte UTF-8, or a 2-byte escape (``\\u`` is off).
BYTES_PER_CHAR = 4
_JSON_OPTIONS = {"whitespace_flexible": False, "json_allowed_escapes": 'nrbtf\\"'}
_ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "$schema"}
_TYPED = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems"},
    "string": {"minLength", "maxLength"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "number": set(),
    "boolean": set(),
    "null": set(),
}
_SCALAR_BYTES = {"boolean": len("false"), "null": len("null")}


@dataclass(frozen=True)
class Constraint:
    """What an answer must be. Build one with `answer` (the task's think + label answer),
    `think_label` (``n`` anonymous one-hot categories) or `json_schema`.

    >>> Constraint.think_label(5).kind
    'answer'
    """

    kind: str  # "answer", "json_schema", or a server's "regex" / "json_object"
    label: LabelKind | None = None  # answer: the label's kind (single, multi, dimensions)
    max_think_tokens: int | None = None  # answer: cap on the think block
    schema_text: str = ""  # json_schema: the schema as JSON text (hashable, property order kept)
    pattern: str = ""  # regex: what the whole answer matches

    def __post_init__(self) -> None:
        if self.kind not in ("answer", "json_schema", "regex", "json_object"):
            raise ValueError(f"unknown constraint kind {self.kind!r}")

    @classmethod
    def answer(cls, label: LabelKind, max_think_tokens: int | None = None) -> Constraint:
        """``<think>`` free text ``</think>`` then ``<label>`` the label ``</label>``.

        One optional newline is allowed after ``</think>``, after ``<label>`` and before
        ``</label>`` (the SFT template writes them). ``max_think_tokens`` caps the think block
        below what ``max_new_tokens`` leaves.
        """
        if label.n < 1:
            raise UserError("structured output: a label answer needs at least one category")
        if max_think_tokens is not None and max_think_tokens < 0:
            raise UserError(
                f"structured output: max_think_tokens must be ≥ 0, not {max_think_tokens}"
            )
        return cls("answer", label=label, max_think_tokens=max_think_tokens)

    @classmethod
    def think_label(
        cls, n: int, max_think_tokens: int | None = None, rule: LabelRule | None = None
    ) -> Constraint:
        """A one-hot answer over ``n`` anonymous categories (``rule``: its label constraints)."""
        if n < 1:
            raise UserError(f"structured output: a label answer needs n ≥ 1 categories, not {n}")
        if rule is not None and rule.n != n:
            raise ValueError(f"a label rule for {rule.n} categories given for {n}")
        return cls.answer(MultiLabel.plain(n, rule), max_think_tokens)

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> Constraint:
        """A JSON value that validates against ``schema`` (the bounded subset `check_schema` allows)."""
        check_schema(schema)
        return cls("json_schema", schema_text=json.dumps(schema, ensure_ascii=False))

    @classmethod
    def regex_pattern(cls, pattern: str) -> Constraint:
        """Text that matches ``pattern`` (a server's ``structured_outputs.regex``); its length
        is bounded only by ``max_tokens``."""
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UserError(f"structured output: not a regular expression: {exc}") from None
        return cls("regex", pattern=pattern)

    @classmethod
    def json_object(cls) -> Constraint:
        """Any JSON object (``response_format: {type: json_object}``); bounded only by
        ``max_tokens``."""
        return cls("json_object")

    @property
    def schema(self) -> dict[str, Any]:
        return json.loads(self.schema_text)

    @property
    def n(self) -> int:
        return self.label.n if self.label is not None else 0

    @property
    def rule(self) -> LabelRule | None:
        return getattr(self.label, "rule", None)

    def grammar(self, tokenizer: Any, max_new_tokens: int) -> str:
        """The llguidance grammar, with free text bounded so an answer fits ``max_new_tokens``."""
        if self.kind == "answer":
            return llguidance.LLMatcher.grammar_from_lark(
                answer_lark(self, tokenizer, max_new_tokens)
            )
        if self.kind == "regex":
            return llguidance.LLMatcher.grammar_from_regex(self.pattern)
        if self.kind == "json_object":
            return llguidance.LLMatcher.grammar_from_json_schema(
                {"type": "object"}, overrides=_JSON_OPTIONS
            )
        schema = bounded_schema(self.schema, max_new_tokens)
        return llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=_JSON_OPTIONS)

    # ---- the forms other servers take

    def regex(self) -> str:
        """The answer as a regular expression (servers that constrain by regex): the same
        labels as the grammar; the think block unbounded (a server's ``max_tokens`` ends it)."""
        if self.kind != "answer":
            raise ValueError("only an answer constraint has a regex form")
        return (
            rx(THINK) + "[^<]*" + rx(THINK_END) + r"\n?" + rx(LABEL)
            + r"\n?" + self.label.regex() + r"\n?" + rx(LABEL_END)
        )  # fmt: skip

    def json_form(self) -> dict[str, Any]:
        """The answer as a JSON object ``{"think": …, "label": …}`` (servers that constrain
        only by JSON schema): the label's schema admits exactly the labels the grammar does;
        the think text has no length cap the local grammar does not have."""
        if self.kind != "answer":
            return self.schema
        return {
            "type": "object",
            "properties": {"think": {"type": "string"}, "label": self.label.json_schema()},
            "required": ["think", "label"],
            "additionalProperties": False,
        }

    def to_wire(self) -> dict[str, Any]:
        """The constraint as the ``answer_grammar`` request field of `llmscisci serve`."""
        if self.kind == "answer":
            out: dict[str, Any] = {"answer": wire(self.label)}
            if self.max_think_tokens is not None:
                out["max_think_tokens"] = self.max_think_tokens
            return out
        return {"json_schema": self.schema}

    @classmethod
    def from_wire(cls, data: Any) -> Constraint:
        """`to_wire`'s inverse; a `ValueError` saying what is wrong."""
        if not isinstance(data, dict) or len(set(data) & {"answer", "json_schema"}) != 1:
            raise ValueError("give exactly one of 'answer' or 'json_schema'")
        extra = sorted(set(data) - {"answer", "json_schema", "max_think_tokens"})
        if extra:
            raise ValueError(f"unknown key(s): {', '.join(extra)}")
        if "json_schema" in data:
            try:
                return cls.json_schema(data["json_schema"])
            except UserError as exc:
                raise ValueError(str(exc)) from None
        cap = data.get("max_think_tokens")
        if cap is not None and (type(cap) is not int or not 0 <= cap <= 1_000_000):
            raise ValueError("max_think_tokens must be an integer ≥ 0")
        try:
            label = from_wire(data["answer"])
        except ValueError as exc:
            raise ValueError(f"answer: {exc}") from None
        return cls.answer(label, cap)


# --------------------------------------------------------------------------- think / label


def _tag(tokenizer: Any, tag: str) -> tuple[str, int]:
    """(lark for ``tag``, its worst-case token cost): an added token is referenced by id.

    llguidance marks every added token special (even ``special: false`` ones such as the tiny
    tokenizer's ``<think>``), so forced text ``"<think>"`` would tokenize to a token whose
    bytes it then rejects; a token reference avoids that.
    """
    token_id = tokenizer.get_added_vocab().get(tag) if tokenizer is not None else None
    if token_id is not None:
        return f"<[{token_id}]>", 1
    return json.dumps(tag), len(tag.encode())


def label_cost(label: LabelKind, tokenizer: Any) -> int:
    """The most tokens a label may take under the grammar.

    A single or multi label: its longest spelling in bytes (a token holds at least one byte),
    so any answer fits. A dimensions label can be long (every dimension at its longest level),
    and its byte count would leave no room for reasoning: there the tokenizer's own encoding of
    that longest label, plus a quarter and 8 tokens, is what is reserved (an answer spelt in
    far more tokens than the tokenizer's own spelling can run out of room: invalid, counted).
    """
    cost = label.max_bytes()
    if label.kind == "dimensions" and tokenizer is not None:
        text = label.render(label.longest())
        canonical = len(tokenizer.encode(text, add_special_tokens=False))
        cost = min(cost, math.ceil(1.25 * canonical) + 8)
    return cost


def answer_lark(constraint: Constraint, tokenizer: Any, max_new_tokens: int) -> str:
    """The lark grammar of a `Constraint.answer` (see the module doc for the bound).

    The think text is ``[^<]*`` (a ``<`` would start ``</think>``).
    """
    label = constraint.label
    tags = {tag: _tag(tokenizer, tag) for tag in (THINK, THINK_END, LABEL, LABEL_END)}
    fixed = sum(cost for _, cost in tags.values()) + 3 + label_cost(label, tokenizer)  # 3 newlines
    budget = max_new_tokens - fixed
    if budget < 0:
        raise UserError(
            f"structured output: max_new_tokens ({max_new_tokens}) is too small for a "
            f"{label.kind} answer over {label.n} categories, whose fixed parts may take {fixed} "
            f"tokens; smallest fix: max_new_tokens: {fixed}"
        )
    if constraint.max_think_tokens is not None:
        budget = min(budget, constraint.max_think_tokens)
    think = " think" if budget > 0 else ""  # no budget: an empty think block
    lines = [
        f"start: {tags[THINK][0]}{think} {tags[THINK_END][0]} NL? {tags[LABEL][0]} NL? "
        f"label_value NL? {tags[LABEL_END][0]}",
        'NL: "\\n"',
        *label.lark(),
    ]
    if budget > 0:
        lines.append(f"think[max_tokens={budget}]: /[^<]*/")
    return "\n".join(lines) + "\n"


def think_label_lark(constraint: Constraint, tokenizer: Any, max_new_tokens: int) -> str:
    """`answer_lark` (the name the one-hot grammar had)."""
    return answer_lark(constraint, tokenizer, max_new_tokens)


# --------------------------------------------------------------------------- JSON schema


def check_schema(schema: Any) -> None:
    """Raise one `UserError` listing every part of ``schema`` outside the bounded subset.

    Supported: ``type`` (object, array, string, integer, boolean, null; number only with
    ``enum``/``const``), ``enum``, ``const``, ``properties``, ``required``,
    ``additionalProperties: false`` (required on objects), ``items`` with ``maxItems``
    (required) and ``minItems``, ``minLength``/``maxLength``, integer bounds (both sides
    required unless ``enum``/``const``), and annotations (title, description, …). Anything
    else (``anyOf``, ``$ref``, ``pattern``, ``format``, …) could make the answer unbounded or
    its length unknowable, so it is refused here rather than truncated at generation time.
    """
    problems: list[str] = []
    _check_node(schema, "$", problems)
    if problems:
        raise UserError(
            "structured output: JSON schema not supported:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def _check_node(node: Any, path: str, problems: list[str]) -> None:
    if not isinstance(node, dict):
        problems.append(f"{path}: a schema must be an object, not {type(node).__name__}")
        return
    kind = node.get("type")
    fixed = "enum" in node or "const" in node
    allowed = _ANNOTATIONS | {"type", "enum", "const"}
    if kind is None:
        if not fixed:
            problems.append(f"{path}: needs a 'type' (or an 'enum'/'const')")
    elif not isinstance(kind, str) or kind not in _TYPED:
        problems.append(f"{path}: unsupported type {kind!r}; supported: {', '.join(_TYPED)}")
        return
    else:
        allowed = allowed | _TYPED[kind]
    for key in sorted(set(node) - allowed):
        supported = ", ".join(sorted(allowed - _ANNOTATIONS))
        problems.append(f"{path}: unsupported keyword {key!r} (supported here: {supported})")
    if "enum" in node and not (isinstance(node["enum"], list) and node["enum"]):
        problems.append(f"{path}.enum: must be a non-empty list")
    if fixed or kind is None:
        return
    if kind == "object":
        _check_object(node, path, problems)
    elif kind == "array":
        if "items" not in node:
            problems.append(f"{path}: an array needs 'items'")
        else:
            _check_node(node["items"], f"{path}.items", problems)
        _check_count(node, "maxItems", path, problems, required=True)
        _check_count(node, "minItems", path, problems)
    elif kind == "string":
        _check_count(node, "maxLength", path, problems)
        _check_count(node, "minLength", path, problems)
    elif kind == "integer":
        if _integer_range(node) is None:
            problems.append(
                f"{path}: an integer needs a lower and an upper bound (minimum/maximum) "
                "or an 'enum', so its length is bounded"
            )
    elif kind == "number":
        problems.append(f"{path}: a number needs an 'enum' (or use an integer with bounds)")


def _check_object(node: dict[str, Any], path: str, problems: list[str]) -> None:
    props = node.get("properties", {})
    if not isinstance(props, dict):
        problems.append(f"{path}.properties: must be an object")
        props = {}
    for name, sub in props.items():
        _check_node(sub, f"{path}.{name}", problems)
    if node.get("additionalProperties") is not False:
        problems.append(
            f"{path}: an object needs 'additionalProperties: false' (extra keys are unbounded)"
        )
    required = node.get("required", [])
    if not isinstance(required, list) or any(r not in props for r in required):
        problems.append(f"{path}.required: must list names from 'properties'")


def _check_count(node: dict[str, Any], key: str, path: str, problems: list[str], required=False):
    value = node.get(key)
    if value is None:
        if required:
            problems.append(f"{path}: an array needs '{key}' so the answer is bounded")
    elif type(value) is not int or value < 0:
        problems.append(f"{path}.{key}: must be an integer ≥ 0")


def _integer_range(node: dict[str, Any]) -> tuple[int, int] | None:
    """The inclusive integer range of an integer schema's bounds, or None when a side is open."""
    lows = [math.ceil(node["minimum"])] if _is_num(node.get("minimum")) else []
    lows += (
        [math.floor(node["exclusiveMinimum"]) + 1] if _is_num(node.get("exclusiveMinimum")) else []
    )
    highs = [math.floor(node["maximum"])] if _is_num(node.get("maximum")) else []
    highs += (
        [math.ceil(node["exclusiveMaximum"]) - 1] if _is_num(node.get("exclusiveMaximum")) else []
    )
    return (max(lows), min(highs)) if lows and highs else None


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dump_bytes(value: Any) -> int:
    """Most UTF-8 bytes ``value`` takes as compact JSON (escaped or raw non-ASCII)."""
    return max(
        len(json.dumps(value, separators=(",", ":"), ensure_ascii=a).encode())
        for a in (True, False)
    )


def _size(node: dict[str, Any]) -> tuple[int, int]:
    """(worst-case bytes with free strings empty, number of free strings) of compact JSON."""
    if "const" in node:
        return _dump_bytes(node["const"]), 0
    if "enum" in node:
        return max(_dump_bytes(v) for v in node["enum"]), 0
    kind = node["type"]
    if kind in _SCALAR_BYTES:
        return _SCALAR_BYTES[kind], 0
    if kind == "integer":
        low, high = _integer_range(node)  # type: ignore[misc]
        return max(len(str(low)), len(str(high))), 0
    if kind == "string":
        if "maxLength" in node:
            return 2 + BYTES_PER_CHAR * node["maxLength"], 0
        return 2, 1
    if kind == "array":
        item, free = _size(node["items"])
        count = node["maxItems"]
        return 2 + count * item + max(count - 1, 0), count * free
    props = node.get("properties", {})
    sizes = [_size(sub) for sub in props.values()]
    keys = sum(_dump_bytes(name) + 1 for name in props)  # "name":
    return 2 + keys + sum(s for s, _ in sizes) + max(len(props) - 1, 0), sum(f for _, f in sizes)


def _free_strings(node: dict[str, Any]):
    """Every string schema without ``maxLength`` (the dicts themselves, to be bounded in place)."""
    if "enum" in node or "const" in node:
        return
    if node.get("type") == "string" and "maxLength" not in node:
        yield node
    elif node.get("type") == "array":
        yield from _free_strings(node["items"])
    elif node.get("type") == "object":
        for sub in node.get("properties", {}).values():
            yield from _free_strings(sub)


def bounded_schema(schema: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
    """``schema`` with a ``maxLength`` on every free string, so any answer fits ``max_new_tokens``.

    >>> bounded_schema({"type": "string"}, 42)
    {'type': 'string', 'maxLength': 10}
    """
    check_schema(schema)
    fixed, free = _size(schema)
    if fixed > max_new_tokens:
        raise UserError(
            f"structured output: the longest answer this JSON schema allows may take {fixed} "
            f"tokens, more than max_new_tokens ({max_new_tokens}); lower maxItems/maxLength "
            f"or raise max_new_tokens to {fixed}"
        )
    if not free:
        return schema
    bounded = copy.deepcopy(schema)
    strings = list(_free_strings(bounded))
    length = (max_new_tokens - fixed) // (BYTES_PER_CHAR * free)
    need = max([1] + [s.get("minLength", 0) for s in strings])
    if length < need:
        smallest = fixed + BYTES_PER_CHAR * free * need
        raise UserError(
            f"structured output: max_new_tokens ({max_new_tokens}) leaves no room for the "
            f"{free} free string(s) of this JSON schema; smallest fix: max_new_tokens: "
            f"{smallest}, or give the strings a maxLength"
        )
    for node in strings:
        node["maxLength"] = length
    return bounded


def _valid(value: Any, node: dict[str, Any]) -> bool:
    """Whether ``value`` (parsed JSON) validates against ``node`` (the supported subset)."""
    if "const" in node and not _same(value, node["const"]):
        return False
    if "enum" in node and not any(_same(value, v) for v in node["enum"]):
        return False
    kind = node.get("type")
    if kind is None:
        return True
    if kind == "object":
        props = node.get("properties", {})
        return (
            isinstance(value, dict)
            and set(value) <= set(props)
            and all(r in value for r in node.get("required", []))
            and all(_valid(v, props[k]) for k, v in value.items())
        )
    if kind == "array":
        return (
            isinstance(value, list)
            and node.get("minItems", 0) <= len(value) <= node["maxItems"]
            and all(_valid(v, node["items"]) for v in value)
        )
    if kind == "string":
        limit = node.get("maxLength", math.inf)
        return isinstance(value, str) and node.get("minLength", 0) <= len(value) <= limit
    if kind == "integer":
        if not (_is_num(value) and float(value).is_integer()):
            return False
        bounds = _integer_range(node)
        return bounds is None or bounds[0] <= value <= bounds[1]
    if kind == "number":
        return _is_num(value)
    if kind == "boolean":
        return isinstance(value, bool)
    return value is None  # null


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1`` and ``true`` differ, ``1`` and ``1.0`` do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if _is_num(a) and _is_num(b):
        return a == b
    return type(a) is type(b) and a == b


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def check(constraint: Constraint, text: str) -> bool:
    """Whether ``text`` satisfies ``constraint`` (the grammar's language, without the length bound).

    >>> check(Constraint.think_label(3), "<think>ok</think>\\n<label>[1, 0, 1]</label>")
    True
    >>> check(Constraint.json_schema({"type": "boolean"}), "1")
    False
    """
    if constraint.kind == "answer":
        if not _compiled(constraint.regex()).fullmatch(text):
            return False
        return read_answer(text, constraint.label).value is not None
    if constraint.kind == "regex":
        return _compiled(constraint.pattern).fullmatch(text) is not None
    if constraint.kind == "json_object":
        try:
            return isinstance(json.loads(text), dict)
        except ValueError:
            return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return _valid(value, constraint.schema)
