"""Recipe loading: YAML text + ``--set`` overrides → a validated, resolved `Job`, or every
problem at once.

Each problem is located (``file:line:col`` or the ``--set`` that caused it) and carries the
dotted key path. Unknown keys get a "did you mean" suggestion. The recipe's task is loaded here,
once: the cross-field checks read it and the `Job` keeps it.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from llmscisci_cfg.errors import Problem, RecipeError, UserError
from llmscisci_cfg.models import chat
from llmscisci_cfg.recipe import checks
from llmscisci_cfg.recipe.resolve import Job, Origin, resolve, set_paths_from_cwd
from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.recipe.yamlio import Located, Path_, load_file, load_text
from llmscisci_cfg.resources import recipe_file
from llmscisci_cfg.task.spec import load_task

_METHODS = typing.get_args(Recipe.model_fields["method"].annotation)
_METHOD_NAMES = [typing.get_args(m.model_fields["name"].annotation)[0] for m in _METHODS]
#: Every key some method takes: a key none takes is unknown whatever the method turns out to be.
_METHOD_KEYS = list(dict.fromkeys(k for m in _METHODS for k in m.model_fields))


def load_job(
    ref: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    run_dir: str | Path | None = None,
    origin: Origin | None = None,
) -> Job:
    """Load, override, validate and resolve one recipe; raise `RecipeError` listing every problem.

    ``origin`` is how the user named the recipe when it differs from ``ref`` (the workers of a
    multi-process run load the run's resolved recipe but record the user's command).
    """
    path = recipe_file(str(ref))
    located = load_file(path)
    recipe, task, set_at = _validate(located, overrides, path)
    origin = origin or Origin(str(ref), tuple(overrides))
    job = resolve(recipe, origin, task=task, run_dir=run_dir)
    found = template_problems(job)
    if found:
        raise RecipeError([_locate(located, set_at, p) for p in found])
    return job


def template_problems(job: Job) -> list[Problem]:
    """The chat template, trial-rendered (a ``tokenizer`` template is checked when it loads)."""
    text = job.template.text
    if text is None:
        return []
    t = job.recipe.template
    key = ("template", "file") if t.file else ("template", "name") if t.name else ("template",)
    return [Problem(key, m) for m in chat.template_problems(text, job.assistant_only)]


def load_recipe(ref: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, override and validate one recipe; raise `RecipeError` listing every problem."""
    return load_job(ref, overrides).recipe


def load_recipe_text(
    text: str, file: str = "<recipe>", overrides: list[str] | tuple[str, ...] = ()
) -> Recipe:
    """As `load_recipe`, from text (used by tests)."""
    return _validate(load_text(text, file), overrides, None)[0]


def _validate(located: Located, overrides, path: Path | None):
    """The validated `Recipe` and its loaded task; `RecipeError` with every problem."""
    if not isinstance(located.data, dict):
        kind = "a list" if isinstance(located.data, list) else f"a {type(located.data).__name__}"
        raise UserError(
            f"{located.where(())}: the recipe must be a YAML mapping of sections, not {kind}"
        )
    set_at = _apply_overrides(located, overrides)
    try:
        recipe = Recipe.model_validate(located.data)
    except ValidationError as exc:
        raise RecipeError(_pydantic_problems(exc, located, set_at)) from None
    recipe._source_path = path.resolve() if path else None
    set_paths_from_cwd(recipe, list(set_at))
    task, found = None, []
    try:
        task = load_task(recipe.data.task, recipe.source_dir, recipe.data.task_overrides)
    except UserError as exc:
        found.append(Problem(("data", "task"), f"cannot load the task: {exc}"))
    found += checks.recipe_problems(recipe, task)
    if found:
        raise RecipeError([_locate(located, set_at, p) for p in found])
    return recipe, task, set_at


# ----------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[Path_, Any]:
    """``train.learning_rate=1e-5`` → (("train", "learning_rate"), 1e-05); values are YAML scalars.

    List items are numbered: ``rewards.0.weight=2`` or ``rewards[0].weight=2``.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text}: expected KEY=VALUE, e.g. --set train.learning_rate=1e-5")
    parts = re.sub(r"\[(\d+)\]", r".\1", key.strip()).split(".")
    if any(not p for p in parts):
        raise UserError(f"--set {text}: empty part in key {key!r}")
    path = tuple(int(p) if p.isdigit() and len(p) < 10 else p for p in parts)
    value = load_text(raw, f"--set {text}").data if raw.strip() else None
    return path, value


def _apply_overrides(located: Located, overrides) -> dict[Path_, str]:
    """Apply ``--set`` values to the parsed YAML; return where each key path was set, keyed as
    the data holds it (mapping keys as text, list positions as ints)."""
    set_at: dict[Path_, str] = {}
    for text in overrides:
        path, value = parse_override(text)
        node, actual = located.data, ()
        for i, part in enumerate(path[:-1]):
            key = _key(node, part)
            nxt = _child(node, part)
            if nxt is None:
                nxt = {}
                _assign(node, part, nxt, text, path[: i + 1])
            node, actual = nxt, actual + (key,)
            if not isinstance(node, (dict, list)):
                dotted = ".".join(map(str, path[: i + 1]))
                raise UserError(f"--set {text}: {dotted} is a value, not a section")
        _assign(node, path[-1], value, text, path)
        set_at[actual + (_key(node, path[-1]),)] = f"--set {text}"
    return set_at


def _key(node, part):
    """How ``part`` is stored in ``node``: text in a mapping, a position in a list."""
    return str(part) if isinstance(node, dict) else part


def _child(node, part):
    if isinstance(node, dict):
        return node.get(part if isinstance(part, str) else str(part), node.get(part))
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _assign(node, part, value, text: str, path: Path_) -> None:
    if isinstance(node, dict):
        node[str(part)] = value
    elif isinstance(node, list) and isinstance(part, int) and part < len(node):
        node[part] = value
    else:
        dotted = ".".join(map(str, path))
        raise UserError(f"--set {text}: cannot set {dotted}: index out of range or not a list")


# ----------------------------------------------------------------------------- pydantic errors


def _pydantic_problems(exc: ValidationError, located: Located, set_at) -> list[Problem]:
    merged: dict[tuple[Path_, str], list[str]] = {}
    for err in exc.errors(include_url=False):
        path, message = _describe(err, located.data)
        merged.setdefault((path, err["type"] == "extra_forbidden" and "key" or "value"), []).append(
            message
        )
        for key_path, unknown in _unknown_method_keys(err, path):
            merged.setdefault((key_path, "key"), []).append(unknown)
    problems = []
    for (path, kind), messages in merged.items():
        message = " or ".join(dict.fromkeys(messages))
        problems.append(_locate(located, set_at, Problem(path, message), at_key=kind == "key"))
    return sorted(problems, key=lambda p: _sort_key(p.where))


def _describe(err: dict, data: Any) -> tuple[Path_, str]:
    """Map one pydantic error to (path in the YAML data, human message)."""
    loc = list(err["loc"])
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif last and err["type"] in ("extra_forbidden", "missing"):
            path.append(part)
        # else: a union branch tag (e.g. 'grpo', 'list[str]') — not a key in the data
    kind = err["type"]
    if kind == "extra_forbidden":
        return tuple(path), "unknown key" + _suggest(tuple(path), data)
    if kind == "missing":
        return tuple(path), "required key is missing"
    if kind == "union_tag_invalid":
        got = err["input"].get("name") if isinstance(err.get("input"), dict) else None
        hint = _did_you_mean(str(got), _METHOD_NAMES)
        return tuple(path) + (
            "name",
        ), f"unknown method {got!r}; choose one of {', '.join(_METHOD_NAMES)}{hint}"
    if kind == "union_tag_not_found":
        return tuple(path) + (
            "name",
        ), f"required key is missing; choose one of {', '.join(_METHOD_NAMES)}"
    message = err["msg"]
    value = err.get("input")
    if not isinstance(value, (dict, list)):
        message += f" (got {_short(value)})"
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return tuple(path), message


def _unknown_method_keys(err: dict, path: Path_) -> list[tuple[Path_, str]]:
    """When the method's ``name`` is missing or unknown, pydantic checks no other key of the
    section; name the keys no method takes (``naem`` → did you mean 'name'?) as well."""
    if err["type"] not in ("union_tag_not_found", "union_tag_invalid"):
        return []
    section = err.get("input")
    if not isinstance(section, dict):
        return []
    base = path[:-1]  # `_describe` points these errors at (..., "name")
    return [
        (base + (key,), "unknown key" + (_did_you_mean(str(key), _METHOD_KEYS) or ""))
        for key in section
        if key not in _METHOD_KEYS
    ]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(path: Path_, data: Any) -> str:
    model = _model_at(path[:-1], data)
    if model is None:
        return ""
    keys = list(model.model_fields)
    return _did_you_mean(str(path[-1]), keys) or f"; valid keys here: {', '.join(keys)}"


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(path: Path_, data: Any) -> type[BaseModel] | None:
    """The schema model that describes the mapping at ``path`` (following the data for unions)."""
    model: Any = Recipe
    node = data
    for part in path:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model = field.annotation
        else:
            model = _item_type(model)
        node = _child(node, part) if node is not None else None
        model = _pick(model, node)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _pick(annotation: Any, node: Any) -> Any:
    """Strip Annotated/Optional; of a union of sections, the one whose ``name`` matches ``node``."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _pick(typing.get_args(annotation)[0], node)
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    name = node.get("name") if isinstance(node, dict) else None
    for model in models:
        if "name" in model.model_fields and name in typing.get_args(
            model.model_fields["name"].annotation
        ):
            return model
    if models:
        return models[0]
    return members[0] if len(members) == 1 else annotation


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        return args[0]
    if origin is dict:
        return args[1]
    return None


# ----------------------------------------------------------------------------- locating


def _locate(
    located: Located, set_at: dict[Path_, str], problem: Problem, at_key: bool = False
) -> Problem:
    """``problem`` at the ``--set`` that wrote its key (or created it, for a problem about a
    section the recipe file does not have), else at its place in the recipe text."""
    key = problem.key
    for i in range(len(key), 0, -1):
        if key[:i] in set_at:
            return problem.at(set_at[key[:i]])
    if key and key not in located.keys:  # a key the file does not have: which --set made it?
        best, blame = 0, None
        for written, where in set_at.items():
            pairs = enumerate(zip(key, written, strict=False))
            common = next((i for i, (a, b) in pairs if a != b), None)
            common = min(len(key), len(written)) if common is None else common
            if common > best and key[:common] not in located.keys:
                best, blame = common, where
        if blame is not None:
            return problem.at(blame)
    return problem.at(located.where_key(key) if at_key else located.where(key))


def _sort_key(where: str) -> tuple:
    parts = where.rsplit(":", 2)
    try:
        return (0, int(parts[1]), int(parts[2]))
    except (ValueError, IndexError):
        return (1, where)
