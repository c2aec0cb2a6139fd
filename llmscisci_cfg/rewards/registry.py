"""Reward names → functions: the built-ins, plug-ins, and the checks on both.

A recipe's reward ``name`` is a built-in (``format``), a module plug-in
(``package.module:function``) or a file plug-in (``path/to/file.py:function``, relative to
the recipe). Two levels of checking:

- `check_specs` (validate time): names, built-in parameters, and that plug-in modules and
  files exist, found with ``find_spec``/a path check. It imports no plug-in code.
- `check_callables` (plan/compile time): imports the plug-ins, then checks that every
  parameter name exists and that the signature binds to the dataset columns plus the
  keyword arguments TRL passes (`TRL_KWARGS`).

Import-light: the validate path imports this module (no torch, no trl).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmscisci_cfg.errors import Problem, UserError
from llmscisci_cfg.recipe.schema import RewardSpec
from llmscisci_cfg.resources import ref_path
from llmscisci_cfg.rewards import builtin

#: Keyword arguments `trl.GRPOTrainer._calculate_rewards` (trl 1.16) passes to every reward,
#: besides the dataset's columns other than prompt/completion/completion_ids.
TRL_KWARGS = (
    "prompts",
    "completions",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
)
#: Columns of every built GRPO dataset (the data stage's contract).
BASE_COLUMNS = ("id", "aspect", "prompt", "gold")
#: Dataset columns TRL does not forward to rewards (it passes prompts/completions instead).
_NOT_FORWARDED = {"prompt", "completion", "completion_ids"}
#: Arguments the compiler supplies, when a function names them: not user parameters.
INJECTED = ("label_kind", "num_categories", "tokenizer", "label_constraints")
_PLUGIN_FORMS = "a plug-in is written package.module:function or path/to/file.py:function"


@dataclass(frozen=True)
class Builtin:
    """One built-in reward as `rewards list` shows it."""

    name: str
    func: Callable[..., list[float]]
    description: str
    value_range: str

    @property
    def params(self) -> dict[str, Any]:
        """User parameters and their defaults, read from the signature."""
        return user_params(self.func)

    @property
    def reads(self) -> list[str]:
        """Dataset columns the reward reads (required keyword-only, not injected)."""
        return [p.name for p in _keyword_only_required(self.func) if p.name not in INJECTED]


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "format",
            builtin.format_reward,
            "1 when <think>…</think> <label>…</label> matches",
            "0 or 1",
        ),
        Builtin(
            "label_valid",
            builtin.label_valid,
            "0.5 when the format matches and the label is valid (a one-hot list, a category, …)",
            "0 or 0.5",
        ),
        Builtin(
            "stepwise_label",
            builtin.stepwise_label,
            "partial credit: label non-empty, 0/1 only, bracketed, valid (needs format)",
            "0 to 1, steps of 0.125",
        ),
        Builtin(
            "hamming",
            builtin.hamming,
            "1 − Hamming loss of a complete, valid label against gold (the research's name "
            "for correct)",
            "0 to 1",
        ),
        Builtin(
            "correct",
            builtin.correct,
            "a complete, valid label against gold: exact match (single), 1 − Hamming loss "
            "(multi), per-dimension agreement (dimensions)",
            "0 to 1",
        ),
        Builtin(
            "cot_length",
            builtin.cot_length,
            "tokens in the think block when the format matches",
            "0 or more tokens",
        ),
        Builtin(
            "cond_cot_stepwise",
            builtin.cond_cot_stepwise,
            "stepwise + alpha·cot_length once stepwise ≥ threshold",
            "0 or more",
        ),
    )
}


def builtin_names() -> list[str]:
    return list(BUILTINS)


def user_params(func: Callable) -> dict[str, Any]:
    """Parameters a recipe may set, with defaults: keyword parameters that have a default."""
    return {
        p.name: p.default
        for p in _signature(func).parameters.values()
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in INJECTED
    }


def _keyword_only_required(func: Callable) -> list[inspect.Parameter]:
    return [
        p
        for p in _signature(func).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]


def _signature(func: Callable) -> inspect.Signature:
    return inspect.signature(func)


# ----------------------------------------------------------------------------- names


@dataclass(frozen=True)
class RewardRef:
    """A parsed reward name."""

    kind: Literal["builtin", "module", "file"]
    target: str  # built-in name, dotted module, or file path as written
    attr: str = ""  # function name (plug-ins)

    def path(self, recipe_dir: Path) -> Path:
        """A file plug-in's path, resolved against the recipe directory."""
        return ref_path(self.target, recipe_dir)


def parse_name(name: str) -> RewardRef:
    """``format`` → built-in; ``pkg.mod:fn`` → module; ``dir/f.py:fn`` → file. Raises `UserError`."""
    if ":" not in name:
        return RewardRef("builtin", name)
    target, _, attr = name.rpartition(":")
    target = target.strip()
    if not attr.isidentifier():
        raise UserError(
            f"{name!r}: {attr!r} after ':' is not a Python function name; {_PLUGIN_FORMS}"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        return RewardRef("file", target, attr)
    if not target or not all(part.isidentifier() for part in target.split(".")):
        raise UserError(f"{name!r}: {target!r} is not a dotted module name; {_PLUGIN_FORMS}")
    return RewardRef("module", target, attr)


def unknown_builtin(name: str) -> str:
    close = difflib.get_close_matches(name, list(BUILTINS), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown reward {name!r}{hint}; built-ins: {', '.join(BUILTINS)}; or {_PLUGIN_FORMS}"


# ----------------------------------------------------------------------------- validate time


def check_specs(specs: Sequence[RewardSpec], recipe_dir: Path) -> list[Problem]:
    """Validate-time problems of the reward entries, without importing any plug-in.

    Duplicate labels, weights and aliases are the loader's checks, not these.
    """
    found: list[Problem] = []
    for i, spec in enumerate(specs):
        try:
            ref = parse_name(spec.name)
        except UserError as exc:
            found.append(Problem(("rewards", i, "name"), str(exc)))
            continue
        if ref.kind == "builtin":
            found.extend(_check_builtin(i, spec))
        elif ref.kind == "module" and not module_exists(ref.target):
            found.append(Problem(("rewards", i, "name"), _module_missing(ref.target)))
        elif ref.kind == "file":
            found.extend(_check_file(i, ref, recipe_dir))
    return found


def _check_builtin(i: int, spec: RewardSpec) -> list[Problem]:
    entry = BUILTINS.get(spec.name)
    if entry is None:
        return [Problem(("rewards", i, "name"), unknown_builtin(spec.name))]
    found = []
    allowed = entry.params
    for key, value in spec.params.items():
        where = ("rewards", i, "params", key)
        if key in INJECTED:
            found.append(
                Problem(where, f"{key} is supplied by the {_source(key)}; remove it from params")
            )
        elif key not in allowed:
            found.append(Problem(where, _unknown_param(spec.name, key, list(allowed))))
        elif not _same_kind(value, allowed[key]):
            kind = (
                "finite number" if isinstance(allowed[key], float) else type(allowed[key]).__name__
            )
            found.append(
                Problem(
                    where,
                    f"{spec.name}.{key} must be a {kind} like {allowed[key]!r}, got {value!r}",
                )
            )
    return found


def _source(key: str) -> str:
    return {
        "label_kind": "task (its answer kind and categories)",
        "num_categories": "task (its category count)",
        "label_constraints": "task file (its `constraints`)",
    }.get(key, "model (its tokenizer)")


def _unknown_param(name: str, key: str, allowed: list[str]) -> str:
    if not allowed:
        return f"{name} takes no parameters; remove {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{name} has no parameter {key!r}{hint}; parameters: {', '.join(allowed)}"


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, float):
        return type(value) in (int, float) and math.isfinite(value)
    return default is None or type(value) is type(default)


def _check_file(i: int, ref: RewardRef, recipe_dir: Path) -> list[Problem]:
    path = ref.path(recipe_dir)
    where = ("rewards", i, "name")
    if not path.is_file():
        return [
            Problem(
                where,
                f"plug-in file not found: {path} (relative paths start at the recipe's folder {recipe_dir})",
            )
        ]
    if path.suffix != ".py":
        return [Problem(where, f"plug-in file {path} is not a .py file")]
    return []


def module_exists(dotted: str) -> bool:
    """Whether ``dotted`` can be imported, found without running any package's ``__init__``."""
    return _find_spec(dotted) is not None


def _find_spec(dotted: str):
    """The module spec of ``dotted``, found without running any package's ``__init__``."""
    parts = dotted.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
        for i in range(1, len(parts)):
            name = ".".join(parts[: i + 1])
            parent = ".".join(parts[:i])
            if parent in sys.modules:  # already imported: asking costs nothing
                spec = importlib.util.find_spec(name)
            elif spec is None or spec.submodule_search_locations is None:
                return None
            else:
                spec = importlib.machinery.PathFinder.find_spec(
                    name, list(spec.submodule_search_locations)
                )
    except (ImportError, ValueError):
        return None
    return spec


def _module_missing(dotted: str) -> str:
    return (
        f"plug-in module {dotted!r} not found on the Python path; install it, add its folder "
        "to PYTHONPATH, or name the file instead: path/to/file.py:function"
    )


# ----------------------------------------------------------------------------- plan time


def load_function(name: str, recipe_dir: Path) -> Callable:
    """The function a reward name refers to, importing a plug-in. Raises `UserError`."""
    ref = parse_name(name)
    if ref.kind == "builtin":
        if name not in BUILTINS:
            raise UserError(unknown_builtin(name))
        return BUILTINS[name].func
    module = _import_file(ref, recipe_dir) if ref.kind == "file" else _import_module(ref.target)
    func = getattr(module, ref.attr, None)
    if func is None:
        have = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        close = difflib.get_close_matches(ref.attr, have, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listing = f"; it defines: {', '.join(have)}" if have else ""
        raise UserError(f"{name!r}: {ref.target} has no function {ref.attr!r}{hint}{listing}")
    if not callable(func):
        raise UserError(
            f"{name!r}: {ref.attr!r} in {ref.target} is a {type(func).__name__}, not a function"
        )
    return func


def _import_module(dotted: str):
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name and (dotted == exc.name or dotted.startswith(exc.name + ".")):
            raise UserError(_module_missing(dotted)) from None
        raise UserError(f"importing plug-in module {dotted!r} failed: {_describe(exc)}") from None
    except Exception as exc:
        raise UserError(f"importing plug-in module {dotted!r} failed: {_describe(exc)}") from None


def _import_file(ref: RewardRef, recipe_dir: Path):
    path = ref.path(recipe_dir)
    if not path.is_file():
        raise UserError(f"plug-in file not found: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    mod_name = f"llmscisci_plugin_{path.stem}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"plug-in file {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # pickling and dataclasses look modules up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise UserError(f"importing plug-in file {path} failed: {_describe(exc)}") from None
    return module


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError at line {exc.lineno}: {exc.msg}"
    return f"{type(exc).__name__}: {exc}"


def signature_problems(
    func: Callable, params: dict[str, Any], columns: Iterable[str]
) -> list[tuple[str | None, str]]:
    """``(param or None, message)`` for each way TRL's call of ``func`` (with ``params``) would fail."""
    try:
        sig = _signature(func)
    except (TypeError, ValueError):
        return [(None, "its signature cannot be inspected; write it as a Python function")]
    passed = reward_kwargs_names(columns)
    by_name = sig.parameters
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in by_name.values())
    problems: list[tuple[str | None, str]] = []
    for key in params:
        p = by_name.get(key)
        if key in passed:
            problems.append(
                (key, f"{key!r} is passed by the trainer on every call; it cannot be a parameter")
            )
        elif key in INJECTED:
            problems.append(
                (key, f"{key} is supplied by the {_source(key)}; remove it from params")
            )
        elif p is None or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            named = [
                n for n, q in by_name.items() if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)
            ]
            close = difflib.get_close_matches(key, named, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                (
                    key,
                    f"the function has no parameter {key!r}{hint}; its parameters: {', '.join(named)}",
                )
            )
    for p in by_name.values():
        if p.kind == p.POSITIONAL_ONLY and p.default is inspect.Parameter.empty:
            problems.append(
                (None, f"parameter {p.name!r} is positional-only; TRL passes everything by keyword")
            )
        elif (
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is inspect.Parameter.empty
        ):
            if p.name not in passed and p.name not in params and p.name not in INJECTED:
                problems.append((None, _needs_column(p.name, passed)))
    if not has_var_kw:
        refused = [k for k in sorted(passed) if k not in by_name]
        if refused:
            problems.append(
                (
                    None,
                    f"it must accept **kwargs: TRL also passes {', '.join(refused)} and it would fail",
                )
            )
    return problems


def _needs_column(name: str, passed: set[str]) -> str:
    columns = sorted(passed - set(TRL_KWARGS))
    return (
        f"it needs {name!r}, which is neither a dataset column ({', '.join(columns) or 'none'}) "
        f"nor a trainer argument ({', '.join(TRL_KWARGS)}); give it a default or add the column"
    )


def reward_kwargs_names(columns: Iterable[str]) -> set[str]:
    """Every keyword TRL passes to a reward for a dataset with ``columns``."""
    return set(TRL_KWARGS) | {c for c in columns if c not in _NOT_FORWARDED}


def check_callables(
    specs: Sequence[RewardSpec], recipe_dir: Path, columns: Iterable[str] = BASE_COLUMNS
) -> list[Problem]:
    """Plan-time problems: import every plug-in and check its signature against ``columns``."""
    columns = list(columns)
    found: list[Problem] = []
    for i, spec in enumerate(specs):
        try:
            func = load_function(spec.name, recipe_dir)
        except UserError as exc:
            found.append(Problem(("rewards", i, "name"), str(exc)))
            continue
        for key, message in signature_problems(func, spec.params, columns):
            where = ("rewards", i, "params", key) if key else ("rewards", i, "name")
            found.append(Problem(where, f"{spec.name}: {message}"))
    return found


def source_file(name: str, recipe_dir: Path) -> Path | None:
    """The file a reward's code lives in, found without importing it (None when not found)."""
    try:
        ref = parse_name(name)
    except UserError:
        return None
    if ref.kind == "builtin":
        return Path(builtin.__file__) if name in BUILTINS else None
    if ref.kind == "file":
        return ref.path(recipe_dir)
    spec = _find_spec(ref.target)
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin not in ("built-in", "frozen") else None
