"""The declarative task: aspects, ordered categories, human codes, prompts and response format.

A task is a YAML file (the shipped one is ``builtin:repro_effort``) that a recipe names in
``data.task`` and may partly replace with ``data.task_overrides``. Prompts are Jinja rendered
in a bounded sandbox (`llmscisci_cfg.sandbox`: time and size limits) with ``StrictUndefined``;
every template is trial-rendered when the task loads,
so a typo in a variable name is a load-time error, not a surprise in the middle of a run.

>>> task = load_task("builtin:repro_effort", Path("."))
>>> task.aspects["easy"].categories[0]
'Availability of Code'
>>> task.completion("Code was public.", [1, 0, 0, 0, 0])
'<think>\\nCode was public.\\n</think>\\n<label>\\n[1, 0, 0, 0, 0]\\n</label>'

Import-light on purpose (pydantic, jinja2, yaml only): ``validate`` and ``plan`` use it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmscisci_cfg import sandbox
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import TaskOverride
from llmscisci_cfg.recipe.yamlio import load_file
from llmscisci_cfg.resources import task_file
from llmscisci_cfg.task.answer import format_match, label_block, parse_label
from llmscisci_cfg.task.labels import encode_onehot

PROMPT_VARIABLES = ("aspect", "title", "question", "categories", "n", "example_label", "text")
RESPONSE_VARIABLES = ("trace", "label")
_SAMPLE_TEXT = "The code was public and the paper was clear."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AspectSpec(_Strict):
    """One labelled section of a report (``easy`` or ``difficult``)."""

    text_column: str = Field(
        ..., min_length=1, description="Default source column holding the section text."
    )
    title: str = Field(
        ..., min_length=1, description="Section title shown in the prompt, e.g. 'What was easy'."
    )
    question: str = Field(
        ..., min_length=1, description="What the model must decide, shown in the prompt."
    )
    categories: list[str] = Field(
        ...,
        min_length=2,
        description="Ordered category names; position i is element i of the one-hot label.",
    )
    codes: dict[str, str] | None = Field(
        None,
        description="Human code -> category name, e.g. {'1': 'Availability of Code'}. "
        "None numbers the categories 1..n in list order.",
    )

    @field_validator("categories")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if any(not c.strip() for c in v):
            raise ValueError("category names must not be empty")
        dup = sorted({c for c in v if v.count(c) > 1})
        if dup:
            raise ValueError(f"categories repeat: {', '.join(dup)}")
        return v

    @model_validator(mode="after")
    def _codes_name_categories(self) -> AspectSpec:
        for code, name in (self.codes or {}).items():
            if not re.fullmatch(r"[1-9]\d*", code):
                raise ValueError(
                    f"code {code!r} must be a positive integer written as text, e.g. '1'"
                )
            if name not in self.categories:
                close = difflib.get_close_matches(name, self.categories, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"code {code!r} names {name!r}, which is not a category{hint}")
        return self

    def code_index(self) -> dict[str, int]:
        """Human code -> 0-based category index (``{'1': 0, ...}``), for `labels.decode_label`."""
        if self.codes is None:
            return {str(i + 1): i for i in range(len(self.categories))}
        return {code: self.categories.index(name) for code, name in self.codes.items()}


class TaskSpec(_Strict):
    """A labelling task: what is asked, about which sections, and how the answer is written."""

    name: str = Field(..., min_length=1, description="Task name, e.g. repro_effort.")
    description: str = Field("", description="One line saying what the task labels.")
    aspects: dict[str, AspectSpec] = Field(
        ..., min_length=1, description="Labelled sections by name."
    )
    system_prompt: str = Field(
        ..., min_length=1, description="Jinja system prompt (asks for the response format)."
    )
    user_prompt: str = Field(
        ..., min_length=1, description="Jinja user prompt; must show {{ text }}."
    )
    response_template: str = Field(
        "<think>\n{{ trace }}\n</think>\n<label>\n{{ label }}\n</label>",
        description="Jinja SFT completion from {{ trace }} and {{ label }}; must match the "
        "rewards' format "
        "'<think>…</think> <label>…</label>'.",
    )

    def variables(self, aspect: str) -> dict[str, Any]:
        """The Jinja variables of ``aspect``'s prompts (without ``text``)."""
        spec = self.aspects[aspect]
        n = len(spec.categories)
        example = [1 if i in (0, 2) and n > 3 else 0 for i in range(n)]
        if not any(example):
            example[0] = 1
        return {
            "aspect": aspect,
            "title": spec.title,
            "question": spec.question,
            "categories": list(spec.categories),
            "n": n,
            "example_label": encode_onehot(example),
        }

    def messages(self, aspect: str, text: str) -> list[dict[str, str]]:
        """The prompt of one example: a system and a user message.

        A template error is a `UserError`: a template can pass the load-time trial render
        and still fail on a real section (``{{ text[40] }}`` on a short one).
        """
        env = self.variables(aspect)
        where = f"task {self.name!r}, aspect {aspect!r}: "
        system = _render_checked(self.system_prompt, env, where + "system_prompt", PROMPT_VARIABLES)
        user = _render_checked(
            self.user_prompt, {**env, "text": text.strip()}, where + "user_prompt", PROMPT_VARIABLES
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def completion(self, trace: str, label: list[int]) -> str:
        """The SFT answer text: think block with ``trace``, then the label block."""
        return _render_checked(
            self.response_template,
            {"trace": trace.strip(), "label": encode_onehot(label)},
            f"task {self.name!r}: response_template",
            RESPONSE_VARIABLES,
        )


def _render(source: str, variables: dict[str, Any]) -> str:
    return sandbox.render(source, variables).strip()


# ----------------------------------------------------------------------------- loading


def load_task(ref: str, base_dir: Path, overrides: TaskOverride | None = None) -> TaskSpec:
    """Load ``builtin:NAME`` or a task YAML path (relative to ``base_dir``) and apply ``overrides``.

    Raises `UserError` naming the file and key (or ``data.task_overrides.KEY``).
    """
    located = load_file(task_file(ref, base_dir), "data.task")
    if not isinstance(located.data, dict):
        raise UserError(
            f"{located.where(())}: a task file is a YAML mapping (name, aspects, prompts)"
        )
    task = _validate(located.data, lambda loc: located.where(loc) + ": " + _dotted(loc))
    _trial_render(task, lambda key: f"{located.where((key,))}: {key}")
    if overrides is None:
        return task
    merged = _apply(task, overrides)
    task = _validate(merged, lambda loc: "data.task_overrides: " + _dotted(loc))
    _trial_render(task, lambda key: f"data.task_overrides.{key}")
    return task


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _validate(data: dict, where) -> TaskSpec:
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and "[" in p)
            )  # union tags
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            elif "type" in err["type"] and isinstance(err.get("input"), (bool, int, float)):
                message += f" (got {err['input']!r}; quote it in YAML)"
            lines.append(f"{where(loc)}: {message}")
        raise UserError("\n".join(lines)) from None


def _apply(task: TaskSpec, o: TaskOverride) -> dict:
    data = task.model_dump()
    for key in ("system_prompt", "user_prompt"):
        if getattr(o, key) is not None:
            data[key] = getattr(o, key)
    for field in ("categories", "codes"):
        for aspect, value in (getattr(o, field) or {}).items():
            if aspect not in data["aspects"]:
                raise UserError(
                    f"data.task_overrides.{field}.{aspect}: no such aspect in task {task.name!r}; "
                    f"aspects: {', '.join(data['aspects'])}"
                )
            data["aspects"][aspect][field] = value
    for aspect, categories in (o.categories or {}).items():
        codes = data["aspects"][aspect]["codes"] or {}
        lost = sorted({name for name in codes.values() if name not in categories})
        if lost and aspect not in (o.codes or {}):
            raise UserError(
                f"data.task_overrides.categories.{aspect}: the task's human codes name categories "
                f"missing from this list ({'; '.join(lost)}); "
                f"also give data.task_overrides.codes.{aspect}"
            )
    return data


def _trial_render(task: TaskSpec, where) -> None:
    """`_check_templates` in a memory- and time-capped child process (`sandbox.isolated`)."""
    try:
        sandbox.isolated(_check_templates, task, where)
    except sandbox.TemplateBudgetError as exc:
        raise UserError(f"{where('user_prompt')}: template error: {exc}") from None


def _check_templates(task: TaskSpec, where) -> None:
    """Trial-render every template so unknown variables and syntax errors show at load time."""
    for key in ("system_prompt", "user_prompt"):
        for aspect in task.aspects:
            env = task.variables(aspect)
            if key == "user_prompt":
                env["text"] = _SAMPLE_TEXT
            _render_checked(getattr(task, key), env, where(key), PROMPT_VARIABLES)
        if key == "user_prompt" and "text" not in _compile_names(task.user_prompt):
            raise UserError(
                f"{where(key)}: the user prompt never shows the section; add {{{{ text }}}}"
            )
    label = [1] + [0] * (len(next(iter(task.aspects.values())).categories) - 1)
    out = _render_checked(
        task.response_template,
        {"trace": "reasoning", "label": encode_onehot(label)},
        where("response_template"),
        RESPONSE_VARIABLES,
    )
    text, closed = label_block(out)
    if not (format_match(out) and closed and parse_label(text, len(label)) == label):
        raise UserError(
            f"{where('response_template')}: renders {out!r}, which does not match the "
            "response format "
            "'<think>…</think>' then '<label>{{ label }}</label>' that the rewards parse"
        )


def _render_checked(
    source: str, variables: dict[str, Any], where: str, allowed: tuple[str, ...]
) -> str:
    """`_render`, with every template error as a `UserError` naming ``where``."""
    try:
        return _render(source, variables)
    except TemplateSyntaxError as exc:
        raise UserError(
            f"{where}: Jinja syntax error (template line {exc.lineno}): {exc.message}"
        ) from None
    except UndefinedError as exc:
        raise UserError(
            f"{where}: {exc.message}; variables available: {', '.join(allowed)}"
        ) from None
    except TemplateError as exc:
        raise UserError(f"{where}: template error: {exc}") from None
    except Exception as exc:  # the user's template raised (1/0, int('x'), ...)
        raise UserError(f"{where}: template error: {type(exc).__name__}: {exc}") from None


def _compile_names(source: str) -> set[str]:
    from jinja2 import meta

    env = SandboxedEnvironment()
    return meta.find_undeclared_variables(env.parse(source))
