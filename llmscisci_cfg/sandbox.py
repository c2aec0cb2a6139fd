"""Bounded, sandboxed Jinja for templates a user (or someone else's recipe) supplies.

Jinja's sandbox blocks attribute escapes but can still be made to loop for hours
(``{% for i in range(100000) %}{% for j in range(100000) %}``) or allocate gigabytes
(``{{ 'a' * 10**9 }}``). Here every render runs under `budget`: a time limit enforced by
tracing the template's own frames (no thread, no subprocess), and size limits checked
*before* an operation allocates (repetition, powers, %-formatting, string methods and filters
called with huge numbers) and on the rendered text. Chat templates rendered by transformers
run under the same time limit when wrapped in `budget`.

The chat-template environment mirrors the one transformers renders with (``raise_exception``,
``strftime_now``, ``tojson``, loop controls, ``{% generation %}``), so `validate` can trial-render
a chat template without importing transformers.

>>> render("Hello {{ name }}", {"name": "x"})
'Hello x'
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

#: Seconds one render may take.
TIME_LIMIT = 2.0
#: Characters one render (or one intermediate string or list) may hold.
MAX_OUTPUT = 4_000_000
#: The largest number a template may pass to a function or filter (widths, repeats, ...).
MAX_ARGUMENT = 1_000_000
_TEMPLATE_FILE = "<template>"
_BIG_WIDTH = re.compile(r"%[-+ #0]*\d{7,}|\{[^}]*:[^}]*\d{7,}")


class TemplateBudgetError(SecurityError):
    """A render went over its time or size limit."""


@contextlib.contextmanager
def budget(seconds: float = TIME_LIMIT) -> Iterator[None]:
    """Stop any Jinja template rendered inside the block after ``seconds``.

    Traces only frames of compiled templates (``co_filename == "<template>"``, which is what
    ``Environment.from_string`` gives, ours and transformers' alike), so other code runs at full
    speed. The previous trace function is restored afterwards.
    """
    deadline = time.monotonic() + seconds
    steps = 0

    def local(frame, event, arg):
        nonlocal steps
        steps += 1
        if steps % 256 == 0 and time.monotonic() > deadline:
            raise TemplateBudgetError(f"rendering took more than {seconds:g} s (a runaway loop?)")
        return local

    def outer(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == _TEMPLATE_FILE:
            return local
        return None

    previous = sys.gettrace()
    sys.settrace(outer)
    try:
        yield
    finally:
        sys.settrace(previous)


def _too_big(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_OUTPUT


def _check_number(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
        raise TemplateBudgetError(f"the number {value} is larger than {MAX_ARGUMENT:,}")


class _Bounded:
    """The size checks shared by both environments (mixed into a sandbox class)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if hasattr(seq, "__len__") and isinstance(n, int) and len(seq) * n > MAX_OUTPUT:
                    raise TemplateBudgetError(f"repeating a value {n} times is too large")
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 256:
                raise TemplateBudgetError(f"{left} ** {right} is too large")
        if operator == "%" and isinstance(left, str) and _BIG_WIDTH.search(left):
            raise TemplateBudgetError("a format width over 6 digits is too large")
        result = super().call_binop(context, operator, left, right)
        if _too_big(result):
            raise TemplateBudgetError(f"a value of more than {MAX_OUTPUT:,} items")
        return result

    def wrap_str_format(self, value: Any):
        """``'…'.format`` in a template: no format widths that allocate megabytes."""
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and _BIG_WIDTH.search(owner):
            raise TemplateBudgetError("a format width over 6 digits is too large")
        return super().wrap_str_format(value)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        for value in (*args, *kwargs.values()):
            _check_number(value)
            if isinstance(value, str) and _BIG_WIDTH.search(value):
                raise TemplateBudgetError("a format width over 6 digits is too large")
        _check_growth(__obj, args)
        result = super().call(__context, __obj, *args, **kwargs)
        if _too_big(result):
            raise TemplateBudgetError(f"a value of more than {MAX_OUTPUT:,} items")
        return result


class BoundedNamespace(Namespace):
    """``namespace()`` whose attributes cannot hold a value past the size limit (a loop that
    doubles ``ns.x`` would otherwise reach gigabytes before the time limit)."""

    def __setitem__(self, name: str, value: Any) -> None:
        if _too_big(value):
            raise TemplateBudgetError(f"a value of more than {MAX_OUTPUT:,} items")
        super().__setitem__(name, value)


def _check_growth(obj: Any, args: tuple) -> None:
    """Before ``sep.join(items)`` or ``s.replace(old, new)`` runs: would the result be too big?"""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if not isinstance(owner, str) or not args:
        return
    if name == "join" and hasattr(args[0], "__len__"):
        size = len(owner) * len(args[0]) + sum(len(str(x)) for x in args[0])
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        size = len(owner) + (owner.count(args[0]) + (not args[0])) * len(str(args[1]))
    elif name == "expandtabs":
        size = len(owner) * (int(args[0]) if isinstance(args[0], int) else 8)
    else:
        return
    if size > MAX_OUTPUT:
        raise TemplateBudgetError(f"{name}() would make more than {MAX_OUTPUT:,} characters")


def _bounded_filter(func, name: str):
    skip = 2 if getattr(func, "jinja_pass_arg", None) else 1  # context/environment, then value

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[skip:], *kwargs.values()):
            _check_number(value)
        params = args[skip - 1 :]
        if name == "format" and any(isinstance(a, str) and _BIG_WIDTH.search(a) for a in params):
            raise TemplateBudgetError("a format width over 6 digits is too large")
        if name == "join" and params and hasattr(params[0], "__iter__"):
            items = params[0] if isinstance(params[0], str) else list(params[0])
            sep = params[1] if len(params) > 1 else kwargs.get("d", "")
            size = len(items) * len(str(sep)) + sum(len(str(x)) for x in items)
            if size > MAX_OUTPUT:
                raise TemplateBudgetError(f"join would make more than {MAX_OUTPUT:,} characters")
        result = func(*args, **kwargs)
        if _too_big(result):
            raise TemplateBudgetError(f"a value of more than {MAX_OUTPUT:,} items")
        return result

    return wrapper


def _bound_filters(env) -> None:
    env.filters = {name: _bounded_filter(f, name) for name, f in env.filters.items()}
    env.globals["namespace"] = BoundedNamespace
    env.globals.pop("lipsum", None)  # lorem ipsum by the megabyte; no prompt needs it


class TaskEnvironment(_Bounded, ImmutableSandboxedEnvironment):
    """Task prompts: strict undefined variables, trimmed blocks, no autoescape, no mutation of
    lists or dicts (``x.extend(x)`` in a loop would grow without bound)."""


class GenerationBlock(Extension):
    """``{% generation %}…{% endgeneration %}``: marks trained assistant text (a no-op here)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


class ChatEnvironment(_Bounded, ImmutableSandboxedEnvironment):
    """Chat templates, rendered as transformers renders them."""


@functools.lru_cache(maxsize=1)
def task_environment() -> TaskEnvironment:
    from jinja2 import StrictUndefined

    env = TaskEnvironment(
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False
    )
    _bound_filters(env)
    return env


def _raise_exception(message: str):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent=None, separators=None, sort_keys=False):
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


@functools.lru_cache(maxsize=1)
def chat_environment() -> ChatEnvironment:
    env = ChatEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
    _bound_filters(env)
    return env


#: Memory a trial render may add (`isolated`), on top of what the process already maps.
MEMORY_LIMIT = 512 * 1024 * 1024


def isolated(fn, *args: Any, seconds: float = TIME_LIMIT + 3, memory: int = MEMORY_LIMIT) -> Any:
    """``fn(*args)`` in a forked child with its address space capped at the current size plus
    ``memory`` and a wall-clock limit: the backstop for trial renders of someone else's
    templates (`validate`), where a path around the in-process checks must cost a refusal,
    not the machine. The result (or the exception) comes back pickled. Without ``fork``
    (not Linux/macOS) it simply calls ``fn``.
    """
    import os
    import pickle
    import resource
    import select
    import signal

    if not hasattr(os, "fork"):
        return fn(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: cap, run, report, exit without cleanup
        os.close(read_end)
        try:
            limit = _mapped_bytes() + memory
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            outcome = ("ok", fn(*args))
        except MemoryError:
            outcome = ("error", TemplateBudgetError("rendering needed more than 512 MiB"))
        except BaseException as exc:  # noqa: BLE001 - carried back to the parent
            outcome = ("error", exc)
        try:
            payload = pickle.dumps(outcome)
        except Exception:
            payload = pickle.dumps(("error", TemplateBudgetError(str(outcome[1]))))
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + seconds
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([pipe], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TemplateBudgetError(f"rendering took more than {seconds:g} s")
            chunk = pipe.read1(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise TemplateBudgetError(f"the trial render died (status {status}): out of memory?")
    try:
        kind, value = pickle.loads(b"".join(chunks))
    except Exception as exc:
        raise TemplateBudgetError(f"the trial render's result did not come back: {exc}") from None
    if kind == "error":
        raise value
    return value


def _mapped_bytes() -> int:
    """Virtual memory this process maps now (Linux: /proc/self/statm), else 0."""
    import os

    try:
        pages = int(open("/proc/self/statm").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


@functools.lru_cache(maxsize=64)
def compile_task(source: str):
    return task_environment().from_string(source)


def render(source: str, variables: dict[str, Any], seconds: float = TIME_LIMIT) -> str:
    """``source`` rendered with ``variables`` in the task environment, within the budget."""
    with budget(seconds):
        out = compile_task(source).render(**variables)
    if len(out) > MAX_OUTPUT:
        raise TemplateBudgetError(f"the rendered text has more than {MAX_OUTPUT:,} characters")
    return out


def render_chat(source: str, seconds: float = TIME_LIMIT, **variables: Any) -> str:
    """A chat template rendered as transformers would, within the budget."""
    with budget(seconds):
        out = chat_environment().from_string(source).render(**variables)
    if len(out) > MAX_OUTPUT:
        raise TemplateBudgetError(f"the rendered text has more than {MAX_OUTPUT:,} characters")
    return out
