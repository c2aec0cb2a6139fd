"""Strict YAML reading that remembers where every key and value came from.

PyYAML's safe loader is used only to *compose* the node tree; we build the Python
values ourselves so that we can:

- reject duplicate keys and any non-standard tag (``!!python/object`` never runs);
- read ``1e-5`` as a float (YAML 1.1 wants ``1.0e-5``);
- record ``(line, col)`` of every key and value, 1-based, keyed by the key path;
- bound the work: an alias that contains itself, nesting deeper than `MAX_DEPTH`, or more than
  `MAX_VALUES` values after alias expansion (the "billion laughs") is refused with its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmscisci_cfg import files
from llmscisci_cfg.errors import UserError

Path_ = tuple[str | int, ...]
#: More nesting than any recipe or task file needs.
MAX_DEPTH = 64
#: Values built from one document, aliases expanded: recipes and task files hold a few hundred.
MAX_VALUES = 100_000

_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
}
# libyaml's parser when PyYAML has it (about 5x faster); both give the same nodes and marks
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_EXP_FLOAT = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")


@dataclass
class Located:
    """Parsed YAML plus the 1-based position of each key (``keys``) and value (``values``)."""

    data: Any
    file: str
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path_) -> str:
        """``file:line:col`` of the value at ``path`` (or its key, or the nearest ancestor)."""
        for p in _ancestors(path):
            pos = self.values.get(p) or self.keys.get(p)
            if pos:
                return f"{self.file}:{pos[0]}:{pos[1]}"
        return f"{self.file}:1:1"

    def where_key(self, path: Path_) -> str:
        """``file:line:col`` of the key at ``path``, falling back like `where`."""
        pos = self.keys.get(path)
        return f"{self.file}:{pos[0]}:{pos[1]}" if pos else self.where(path)


def _ancestors(path: Path_):
    for i in range(len(path), -1, -1):
        yield path[:i]


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


class _Builder:
    def __init__(self, loader: yaml.SafeLoader | yaml.CSafeLoader, out: Located):
        self.loader = loader
        self.out = out
        self.open: set[int] = set()  # nodes being built: an alias to one of them is a cycle
        self.count = 0

    def build(self, node: yaml.Node, path: Path_) -> Any:
        if id(node) in self.open:
            raise self._error(node, "an alias refers to a node that contains it (recursive alias)")
        if len(path) > MAX_DEPTH:
            raise self._error(node, f"nested more than {MAX_DEPTH} levels deep")
        self.count += 1
        if self.count > MAX_VALUES:
            raise self._error(
                node, f"more than {MAX_VALUES:,} values once aliases are expanded (alias bomb?)"
            )
        self.out.values[path] = _pos(node.start_mark)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            self.open.add(id(node))
            try:
                return self._build_collection(node, path)
            finally:
                self.open.discard(id(node))
        return self._build_scalar(node)

    def _build_collection(self, node: yaml.Node, path: Path_) -> Any:
        if node.tag not in _STANDARD_TAGS:
            raise self._error(node, f"tag {node.tag!r} is not allowed in a recipe")
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._error(key_node, "mapping keys must be plain scalars")
                key = self.loader.construct_scalar(key_node)
                if key in result:
                    first = self.out.keys[path + (key,)]
                    raise self._error(
                        key_node, f"duplicate key {key!r} (first defined at line {first[0]})"
                    )
                self.out.keys[path + (key,)] = _pos(key_node.start_mark)
                result[key] = self.build(value_node, path + (key,))
            return result
        return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]

    def _build_scalar(self, node: yaml.Node) -> Any:
        if node.tag not in _STANDARD_TAGS:
            raise self._error(node, f"tag {node.tag!r} is not allowed in a recipe")
        if (
            node.tag == "tag:yaml.org,2002:str"
            and node.style is None
            and _EXP_FLOAT.match(node.value)
        ):
            return float(node.value)
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value  # keep dates as text; recipes never need datetime objects
        return self.loader.construct_object(node, deep=True)

    def _error(self, node: yaml.Node, message: str) -> UserError:
        line, col = _pos(node.start_mark)
        return UserError(f"{self.out.file}:{line}:{col}: {message}")


def decode(raw: bytes, file: str) -> str:
    """UTF-8 text of ``raw``, or a `UserError` naming the first bad byte's position."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise UserError(
            f"{file}:{line}:{col}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None


def load_text(text: str, file: str) -> Located:
    """Parse one YAML document from ``text``; ``file`` is used in messages only."""
    out = Located(data=None, file=file)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        raise UserError(
            f"{file}:{line}:{col}: character {exc.character!r} is not allowed in YAML (control character?)"
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise UserError(f"{file}:1:1: the file is empty; a recipe is a YAML mapping")
        out.data = _Builder(loader, out).build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _pos(mark) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        hint = (
            " (YAML forbids tabs for indentation; use spaces)"
            if "\\t" in problem or "tab" in problem
            else ""
        )
        raise UserError(f"{file}:{line}:{col}: YAML syntax error: {problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{file}:1:1: YAML error: {exc}") from None
    except RecursionError:  # a merge key (<<) that includes its own mapping
        raise UserError(f"{file}:1:1: an alias or merge key refers to itself") from None
    finally:
        loader.dispose()
    return out


def load_file(path: str | Path, what: str = "a recipe") -> Located:
    """Read (a regular file, at most `files.TEXT_LIMIT` bytes) and parse a YAML file with
    positions, as `load_text`; ``what`` names the file's role in messages."""
    p = Path(path)
    raw = files.read_bytes(p, what, files.TEXT_LIMIT)
    return load_text(decode(raw, str(p)), str(p))
