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

**Label constraints.** Given the task's `LabelRule` (``exclusive`` categories, ``min_positive``),
the label list itself is a small grammar that admits exactly the labels the rule allows (an
exclusive category set alone; otherwise the exclusive positions are 0 and the others count
their ones up to ``min_positive``), so a constrained answer keeps the constraints by
construction. The JSON-schema form that servers receive (`llmscisci_cfg.models.remote`) cannot
say this in the bounded schema subset; there the label is checked after generation
(`check`, and every reader's `parse_completion` with the rule), and one that breaks the rule is
an invalid answer.
- ``json_schema``: JSON is compact (no free whitespace), arrays need ``maxItems``, integers
  bounds or an ``enum``; a string without ``maxLength`` gets ``maxLength = (max_new_tokens -
  fixed bytes) // (4 × number of such strings)``, 4 being the most bytes one character takes
  (``\\uXXXX`` escapes are turned off, so ``\\n`` and UTF-8 cost at most 4).
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import llguidance

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.task.answer import parse_completion
from llmscisci_cfg.task.constraints import LabelRule

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
    """What an answer must be. Build one with `think_label` or `json_schema`.

    >>> Constraint.think_label(5).kind
    'think_label'
    """

    kind: str  # "think_label" or "json_schema"
    n: int = 0  # think_label: number of categories
    max_think_tokens: int | None = None  # think_label: cap on the think block
    schema_text: str = ""  # json_schema: the schema as JSON text (hashable, property order kept)
    rule: LabelRule | None = None  # think_label: the task's label constraints, if any

    def __post_init__(self) -> None:
        if self.kind not in ("think_label", "json_schema"):
            raise ValueError(f"unknown constraint kind {self.kind!r}")

    @classmethod
    def think_label(
        cls, n: int, max_think_tokens: int | None = None, rule: LabelRule | None = None
    ) -> Constraint:
        """``<think>`` free text ``</think>`` then ``<label>[d, d, …]</label>``, ``n`` digits 0/1.

        One optional newline is allowed after ``</think>``, after ``<label>`` and before
        ``</label>`` (the SFT template writes them). ``max_think_tokens`` caps the think block
        below what ``max_new_tokens`` leaves; ``rule`` (the task's label constraints) limits
        the label to the ones it allows.
        """
        if n < 1:
            raise UserError(f"structured output: a label answer needs n ≥ 1 categories, not {n}")
        if max_think_tokens is not None and max_think_tokens < 0:
            raise UserError(
                f"structured output: max_think_tokens must be ≥ 0, not {max_think_tokens}"
            )
        if rule is not None and rule.n != n:
            raise ValueError(f"a label rule for {rule.n} categories given for {n}")
        return cls("think_label", n=n, max_think_tokens=max_think_tokens, rule=rule)

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> Constraint:
        """A JSON value that validates against ``schema`` (the bounded subset `check_schema` allows)."""
        check_schema(schema)
        return cls("json_schema", schema_text=json.dumps(schema, ensure_ascii=False))

    @property
    def schema(self) -> dict[str, Any]:
        return json.loads(self.schema_text)

    def grammar(self, tokenizer: Any, max_new_tokens: int) -> str:
        """The llguidance grammar, with free text bounded so an answer fits ``max_new_tokens``."""
        if self.kind == "think_label":
            lark = think_label_lark(self, tokenizer, max_new_tokens)
            return llguidance.LLMatcher.grammar_from_lark(lark)
        schema = bounded_schema(self.schema, max_new_tokens)
        return llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=_JSON_OPTIONS)


# --------------------------------------------------------------------------- think / label


def _tag(tokenizer: Any, tag: str) -> tuple[str, int]:
    """(lark for ``tag``, its worst-case token cost): an added token is referenced by id.

    llguidance marks every added token special (even ``special: false`` ones such as the tiny
    tokenizer's ``<think>``), so forced text ``"<think>"`` would tokenize to a token whose
    bytes it then rejects; a token reference avoids that.
    """
    token_id = tokenizer.get_added_vocab().get(tag)
    if token_id is not None:
        return f"<[{token_id}]>", 1
    return json.dumps(tag), len(tag.encode())


def think_label_lark(constraint: Constraint, tokenizer: Any, max_new_tokens: int) -> str:
    """The lark grammar of a `Constraint.think_label` answer (see the module doc for the bound).

    The think text is ``[^<]*`` (a ``<`` would start ``</think>``).
    """
    n = constraint.n
    tags = {tag: _tag(tokenizer, tag) for tag in (THINK, THINK_END, LABEL, LABEL_END)}
    # optional newlines (3), "[" "]", n digits, n-1 ", " separators
    fixed = sum(cost for _, cost in tags.values()) + 3 + 2 + n + 2 * (n - 1)
    budget = max_new_tokens - fixed
    if budget < 0:
        raise UserError(
            f"structured output: max_new_tokens ({max_new_tokens}) is too small for a {n}-label "
            f"answer, whose fixed parts may take {fixed} tokens; smallest fix: "
            f"max_new_tokens: {fixed}"
        )
    if constraint.max_think_tokens is not None:
        budget = min(budget, constraint.max_think_tokens)
    think = " think" if budget > 0 else ""  # no budget: an empty think block
    bits = "BIT" + (f' (", " BIT){{{n - 1}}}' if n > 1 else "")
    rules = []
    if constraint.rule is not None:
        bits, rules = "labels", label_rules_lark(constraint.rule)
    lines = [
        f"start: {tags[THINK][0]}{think} {tags[THINK_END][0]} NL? {tags[LABEL][0]} NL? "
        f'"[" {bits} "]" NL? {tags[LABEL_END][0]}',
        'NL: "\\n"',
        "BIT: /[01]/",
        *rules,
    ]
    if budget > 0:
        lines.append(f"think[max_tokens={budget}]: /[^<]*/")
    return "\n".join(lines) + "\n"


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


def _answer_re(n: int) -> re.Pattern[str]:
    return re.compile(
        r"<think>[^<]*</think>\n?<label>\n?\[[01]" + r"(?:, [01])" * (n - 1) + r"\]\n?</label>"
    )


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


def check(constraint: Constraint, text: str) -> bool:
    """Whether ``text`` satisfies ``constraint`` (the grammar's language, without the length bound).

    >>> check(Constraint.think_label(3), "<think>ok</think>\\n<label>[1, 0, 1]</label>")
    True
    >>> check(Constraint.json_schema({"type": "boolean"}), "1")
    False
    """
    if constraint.kind == "think_label":
        if not _answer_re(constraint.n).fullmatch(text):
            return False
        fmt, label = parse_completion(text, constraint.n, constraint.rule)
        return fmt and label is not None
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return _valid(value, constraint.schema)
