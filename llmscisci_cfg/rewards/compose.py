"""The recipe's reward stack as TRL callables: parameters bound, weights and names in order.

>>> stack = build_rewards([RewardSpec(name="format", weight=2.0)], Path("."), MultiLabel.plain(5))
>>> stack.names, stack.weights, stack.funcs[0].__name__
(['format'], [2.0], 'format')
>>> stack.funcs[0](completions=["<think>a</think><label>[1]</label>"])
[1.0]
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError, first_line, raise_problems
from llmscisci_cfg.recipe.schema import RewardSpec
from llmscisci_cfg.rewards.builtin import LabelKinds
from llmscisci_cfg.rewards.registry import BASE_COLUMNS, check_callables, load_function


class RewardError(UserError):
    """A reward function failed or broke its contract; the message names it and the step."""


class RewardFn:
    """One reward with its recipe parameters bound (``functools.partial``).

    ``__name__`` is the reward's label, so TRL logs ``rewards/<label>/mean`` and ``/std``
    (TRL unwraps a bare partial to the wrapped function's name, which would lose aliases).
    Every call is checked: a reward that raises (or calls ``sys.exit``), or returns anything but
    one number (or None) per completion, is a `RewardError` naming the reward, its function,
    the training step and what it returned, instead of a traceback from inside TRL.
    """

    def __init__(self, name: str, func: Callable, bound: Mapping[str, Any]):
        self.__name__ = name
        self.func = func
        self.bound = dict(bound)
        self._partial = functools.partial(func, **self.bound)

    def __call__(self, *args: Any, **kwargs: Any) -> list[float]:
        try:
            out = self._partial(*args, **kwargs)
        except (Exception, SystemExit) as exc:
            raise self._error(kwargs, _raised(exc)) from None
        return self._checked(out, kwargs)

    def _checked(self, out: Any, kwargs: dict[str, Any]) -> Any:
        n = len(kwargs["completions"]) if "completions" in kwargs else None
        if not isinstance(out, (list, tuple)) or (n is not None and len(out) != n):
            got = f"{len(out)} values" if isinstance(out, (list, tuple)) else _describe(out)
            expected = f"a list of {n} floats" if n is not None else "a list of floats"
            raise self._error(kwargs, f"returned {got}; expected {expected}, one per completion")
        bad = next((v for v in out if v is not None and not _is_number(v)), _OK)
        if bad is not _OK:
            raise self._error(kwargs, f"returned a value that is not a number: {_describe(bad)}")
        return out

    def _error(self, kwargs: dict[str, Any], what: str) -> RewardError:
        """``reward 'name' <what> (at step N; FILE)``."""
        state = kwargs.get("trainer_state")
        context = []
        if getattr(state, "global_step", None) is not None:
            context.append(f"at step {state.global_step}")
        try:
            source = inspect.getsourcefile(self.func)
        except TypeError:
            source = None
        if source and "llmscisci_cfg" not in Path(source).parts:
            context.append(f"in {source}")
        more = f" ({'; '.join(context)})" if context else ""
        return RewardError(f"reward {self.__name__!r} {what}{more}")

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.bound.items() if k != "tokenizer"}
        return f"RewardFn({self.__name__!r}, {getattr(self.func, '__qualname__', self.func)!r}, {shown})"


class AsyncRewardFn(RewardFn):
    """`RewardFn` for an ``async def`` plug-in; TRL awaits it on its event loop."""

    async def __call__(self, *args: Any, **kwargs: Any) -> list[float]:
        try:
            out = await self._partial(*args, **kwargs)
        except (Exception, SystemExit) as exc:
            raise self._error(kwargs, _raised(exc)) from None
        return self._checked(out, kwargs)


_OK = object()


def _raised(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}); a reward must return its values"
    return f"raised {type(exc).__name__}: {first_line(exc)}"


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        or hasattr(value, "__float__")
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


@dataclass(frozen=True)
class RewardStack:
    """What `trl.GRPOTrainer` receives: ``reward_funcs`` and ``GRPOConfig.reward_weights``."""

    funcs: list[RewardFn]
    weights: list[float]
    names: list[str]

    def __len__(self) -> int:
        return len(self.funcs)


def accepts(func: Callable, name: str) -> bool:
    """Whether ``func`` has a parameter called ``name`` (not just ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(name)
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def needs_tokenizer(specs: Sequence[RewardSpec], recipe_dir: Path) -> bool:
    """Whether any reward takes a ``tokenizer`` (imports plug-ins)."""
    return any(accepts(load_function(s.name, recipe_dir), "tokenizer") for s in specs)


def build_rewards(
    specs: Sequence[RewardSpec],
    recipe_dir: Path,
    label_kind: LabelKinds,
    tokenizer: Any = None,
    columns: Iterable[str] = BASE_COLUMNS,
) -> RewardStack:
    """Check (`check_callables`) and bind every reward; raises `UserError` listing all problems.

    ``label_kind`` (the task's answer kind, one or one per aspect) and ``tokenizer`` go to each
    function that names them; so do ``num_categories`` and ``label_constraints`` (the kinds'
    category counts and one-hot label rules) for plug-ins written against those. A reward that
    takes a tokenizer needs one here.
    """
    raise_problems(check_callables(specs, recipe_dir, columns))
    derived = {
        "label_kind": label_kind,
        "num_categories": _per_aspect(label_kind, lambda k: k.n),
        "label_constraints": _per_aspect(label_kind, lambda k: getattr(k, "rule", None)),
    }
    funcs = []
    for spec in specs:
        func = load_function(spec.name, recipe_dir)
        bound = dict(spec.params)
        for key, value in derived.items():
            if accepts(func, key):
                bound[key] = value
        if accepts(func, "tokenizer"):
            if tokenizer is None:
                raise ValueError(f"reward {spec.label!r} takes a tokenizer; pass tokenizer=")
            bound["tokenizer"] = tokenizer
        cls = AsyncRewardFn if _is_async(func) else RewardFn
        funcs.append(cls(spec.label, func, bound))
    return RewardStack(
        funcs=funcs, weights=[float(s.weight) for s in specs], names=[s.label for s in specs]
    )


def _per_aspect(label_kind: LabelKinds, get: Callable[[Any], Any]) -> Any:
    """``get`` of one kind, or per aspect (one value when every aspect gives the same)."""
    if not isinstance(label_kind, Mapping):
        return get(label_kind)
    values = {a: get(k) for a, k in label_kind.items()}
    distinct = set(values.values())
    return distinct.pop() if len(distinct) == 1 else values


def _is_async(func: Callable) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    call = func.__call__ if callable(func) else None
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


def default_label_kinds() -> LabelKinds:
    """The label kinds of the default task (``builtin:repro_effort``), one per aspect."""
    from llmscisci_cfg.task.spec import load_task

    task = load_task("builtin:repro_effort", Path.cwd())
    return task_label_kinds(task, list(task.aspects))


def task_label_kinds(task: Any, aspects: Sequence[str]) -> LabelKinds:
    """The label kind of each aspect of ``task`` (one kind when they are all the same)."""
    kinds = {a: task.label_kind(a) for a in aspects}
    distinct = set(kinds.values())
    return distinct.pop() if len(distinct) == 1 else kinds
