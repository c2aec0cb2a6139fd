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
from typing import Any, Literal

from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from llmscisci_cfg import digest, sandbox
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import TaskOverride
from llmscisci_cfg.recipe.yamlio import load_file
from llmscisci_cfg.resources import task_file
from llmscisci_cfg.task.constraints import LabelConstraints, LabelRule
from llmscisci_cfg.task.grammar import Constraint, check_schema
from llmscisci_cfg.task.kinds import (
    DimensionLabel,
    LabelKind,
    MultiLabel,
    SingleLabel,
    norm,
    read_answer,
)
from llmscisci_cfg.task.labels import encode_onehot

PROMPT_VARIABLES = (
    "aspect", "title", "question", "categories", "n", "example_label", "levels", "text",
)  # fmt: skip
#: Prompt variables a task kind adds (`TaskSpec.messages` takes them as ``extra``).
KIND_VARIABLES = {
    "label": (),
    "extract": (),
    "rationale": ("gold", "gold_categories"),
    "judge": ("answer", "answer_a", "answer_b"),
}
Kind = Literal["label", "extract", "judge", "rationale"]
AnswerKind = Literal["single", "multi", "dimensions"]
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
        default_factory=list,
        description="Ordered category names; position i is element i of the one-hot label "
        "(label, rationale and judge tasks; at least two).",
    )
    codes: dict[str, str] | None = Field(
        None,
        description="Human code -> category name, e.g. {'1': 'Availability of Code'}. "
        "None numbers the categories 1..n in list order.",
    )
    constraints: LabelConstraints | None = Field(
        None,
        description="This aspect's label constraints, replacing the task's `constraints`.",
    )
    aliases: dict[str, list[str]] | None = Field(
        None,
        description="Other spellings of a category (or dimension) that gold cells and answers "
        "may use, e.g. {'Financial or material worry': ['financial/material worry']}; names "
        "are matched case- and space-insensitively anyway.",
    )
    levels: list[str] | None = Field(
        None,
        description="dimensions answers: this aspect's ordered levels, replacing the task's.",
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

    @model_validator(mode="after")
    def _aliases_name_categories(self) -> AspectSpec:
        seen = {norm(c): c for c in self.categories}
        if len(seen) != len(self.categories):
            raise ValueError("categories repeat when case and spaces are ignored")
        for name, spellings in (self.aliases or {}).items():
            if name not in self.categories:
                close = difflib.get_close_matches(name, self.categories, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"aliases: {name!r} is not a category{hint}")
            for alias in spellings:
                other = seen.get(norm(alias))
                if other is not None and other != name:
                    raise ValueError(f"aliases: {alias!r} is already the category {other!r}")
                seen[norm(alias)] = name
        return self

    def alias_index(self) -> tuple[tuple[str, int], ...]:
        """``(alias, category index)`` pairs, for the label kinds."""
        return tuple(
            (alias, self.categories.index(name))
            for name, spellings in (self.aliases or {}).items()
            for alias in spellings
        )

    def code_index(self) -> dict[str, int]:
        """Human code -> 0-based category index (``{'1': 0, ...}``), for `labels.decode_label`."""
        if self.codes is None:
            return {str(i + 1): i for i in range(len(self.categories))}
        return {code: self.categories.index(name) for code, name in self.codes.items()}


class JudgeSpec(_Strict):
    """How a judge task scores: one answer on a scale, or two answers against each other."""

    style: Literal["pointwise", "pairwise"] = Field(
        "pointwise",
        description="pointwise: a rubric score for one answer column; pairwise: which of two "
        "answer columns is better (asked in both orders, to cancel position bias).",
    )
    scale: tuple[int, int] = Field((1, 5), description="pointwise: lowest and highest score.")
    max_reason_chars: int = Field(
        400, ge=0, description="Length bound of the judge's reason (0: no reason asked)."
    )

    @model_validator(mode="after")
    def _scale(self) -> JudgeSpec:
        if self.scale[0] >= self.scale[1]:
            raise ValueError(
                f"scale {list(self.scale)}: the lowest score must be below the highest"
            )
        return self


class TaskSpec(_Strict):
    """A task: what is asked, about which sections, and how the answer is written.

    ``kind`` says what an answer is: ``label`` (a one-hot over the aspect's categories, in the
    ``<think>…</think><label>[…]</label>`` format), ``rationale`` (a teacher's reasoning for a
    given gold label, same format), ``extract`` (a JSON object of ``fields``), or ``judge`` (a
    score or a preference about answer columns, see `JudgeSpec`).
    """

    name: str = Field(..., min_length=1, description="Task name, e.g. repro_effort.")
    description: str = Field("", description="One line saying what the task labels.")
    kind: Kind = Field("label", description="What an answer is: label, rationale, extract, judge.")
    answer: AnswerKind = Field(
        "multi",
        description="How a label is answered (label and rationale tasks): single (one category "
        "name), multi (a set of categories as a one-hot list), dimensions (an object of the "
        "present dimensions, each at one of `levels`).",
    )
    levels: list[str] | None = Field(
        None,
        description="dimensions answers: the ordered levels of every dimension, e.g. "
        "[low, medium, high] (absent is not a level).",
    )
    fields: dict[str, Any] | None = Field(
        None,
        description="extract: the answer's JSON schema (an object; types, enums, required). "
        "Decoding is constrained to it.",
    )
    judge: JudgeSpec | None = Field(None, description="judge: how answers are scored.")
    constraints: LabelConstraints | None = Field(
        None,
        description="Label constraints of every aspect, e.g. {exclusive: [5], min_positive: 1}; "
        "off by default (the research's one-hot rule only). An answer that breaks them is "
        "invalid: in gold labels, rewards, eval and structured output.",
    )
    aspects: dict[str, AspectSpec] = Field(
        ..., min_length=1, description="Labelled sections by name."
    )
    system_prompt: str = Field(
        ..., min_length=1, description="Jinja system prompt (asks for the response format)."
    )
    user_prompt: str = Field(
        ..., min_length=1, description="Jinja user prompt; must show {{ text }}."
    )
    _kinds: dict[str, Any] = PrivateAttr(default_factory=dict)  # label kind per aspect

    response_template: str = Field(
        "<think>\n{{ trace }}\n</think>\n<label>\n{{ label }}\n</label>",
        description="Jinja SFT completion from {{ trace }} and {{ label }}; must match the "
        "rewards' format "
        "'<think>…</think> <label>…</label>'.",
    )

    @model_validator(mode="after")
    def _kind_needs(self) -> TaskSpec:
        if self.kind in ("label", "rationale", "judge"):
            few = [a for a, s in self.aspects.items() if len(s.categories) < 2]
            if few:
                raise ValueError(
                    f"a {self.kind} task needs at least two categories per aspect; "
                    f"{', '.join(few)} has fewer"
                )
        if self.kind == "extract" and not self.fields:
            raise ValueError("an extract task needs `fields`: the JSON schema of its answer")
        if self.kind == "judge" and self.judge is None:
            raise ValueError("a judge task needs `judge: {style: pointwise | pairwise, …}`")
        if self.answer == "dimensions" and self.kind in ("label", "rationale"):
            missing = [a for a, s in self.aspects.items() if not (s.levels or self.levels)]
            if missing:
                raise ValueError(
                    f"a dimensions answer needs `levels` (e.g. [low, medium, high]); "
                    f"{', '.join(missing)} has none"
                )
            for where, levels in [("levels", self.levels)] + [
                (f"aspects.{a}.levels", s.levels) for a, s in self.aspects.items()
            ]:
                if levels is not None and (
                    not levels or len({norm(v) for v in levels}) != len(levels)
                ):
                    raise ValueError(f"{where}: give different, non-empty level names")
        if self.answer != "multi" and self.constraints is not None:
            raise ValueError("constraints apply to multi answers only (a one-hot list)")
        return self

    def label_kind(self, aspect: str) -> LabelKind:
        """How ``aspect``'s label is written and read (`llmscisci_cfg.task.kinds`)."""
        return _label_kind(self, aspect)

    def constraint(self, aspect: str, max_new_tokens: int | None = None) -> Constraint:
        """What an answer to ``aspect`` must be: the think + label answer of a label or
        rationale task, else the JSON schema of an extract or judge answer."""
        if self.kind in ("label", "rationale"):
            return Constraint.answer(self.label_kind(aspect))
        return Constraint.json_schema(self.answer_schema(max_new_tokens))

    @property
    def variable_names(self) -> tuple[str, ...]:
        return PROMPT_VARIABLES + KIND_VARIABLES[self.kind]

    def variables(self, aspect: str) -> dict[str, Any]:
        """The Jinja variables of ``aspect``'s prompts (without ``text``)."""
        spec = self.aspects[aspect]
        n = len(spec.categories)
        labelled = n and self.kind in ("label", "rationale", "judge")
        kind = self.label_kind(aspect) if labelled else None
        return {
            "aspect": aspect,
            "title": spec.title,
            "question": spec.question,
            "categories": list(spec.categories),
            "n": n,
            "example_label": kind.render(kind.example()) if kind is not None else "",
            "levels": list(spec.levels or self.levels or []),
        }

    def messages(self, aspect: str, text: str, **extra: Any) -> list[dict[str, str]]:
        """The prompt of one example: a system and a user message (``extra``: the variables of
        the task's kind, e.g. ``answer`` for a judge).

        A template error is a `UserError`: a template can pass the load-time trial render
        and still fail on a real section (``{{ text[40] }}`` on a short one).
        """
        env = {**self.variables(aspect), **extra}
        names = self.variable_names
        where = f"task {self.name!r}, aspect {aspect!r}: "
        system = _render_checked(self.system_prompt, env, where + "system_prompt", names)
        user = _render_checked(
            self.user_prompt, {**env, "text": text.strip()}, where + "user_prompt", names
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def answer_schema(self, max_new_tokens: int | None = None) -> dict[str, Any] | None:
        """The JSON schema an answer must follow (extract and judge tasks), else None.

        A judge's reason is bounded by ``judge.max_reason_chars`` and, given ``max_new_tokens``,
        so that the whole answer fits it even at 4 bytes a character (~40 tokens of JSON
        around it)."""
        if self.kind == "extract":
            return self.fields
        if self.kind != "judge" or self.judge is None:
            return None
        j = self.judge
        properties: dict[str, Any] = {}
        reason = j.max_reason_chars
        if max_new_tokens is not None:
            reason = min(reason, (max_new_tokens - 40) // 4)
        if reason > 0:
            properties["reason"] = {"type": "string", "maxLength": reason}
        if j.style == "pointwise":
            properties["score"] = {"type": "integer", "minimum": j.scale[0], "maximum": j.scale[1]}
        else:
            properties["winner"] = {"type": "string", "enum": ["A", "B", "tie"]}
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    def label_rule(self, aspect: str) -> LabelRule | None:
        """``aspect``'s label constraints resolved to positions (its own, else the task's), or
        None without any. A `ValueError` when they do not fit the aspect (`load_task` reports
        that with the file and key first).

        >>> load_task("builtin:repro_effort", Path(".")).label_rule("easy").describe()
        'category 5 alone, at least 1 category set'
        """
        spec = self.aspects[aspect]
        found = spec.constraints or self.constraints
        if found is None or self.kind == "extract":
            return None
        return found.rule(spec.code_index(), len(spec.categories))

    def label_rules(self) -> dict[str, LabelRule | None] | None:
        """`label_rule` of every aspect, or None when no aspect has constraints (the default)."""
        rules = {a: self.label_rule(a) for a in self.aspects}
        return rules if any(r is not None for r in rules.values()) else None

    def completion(self, trace: str, label: Any, aspect: str | None = None) -> str:
        """The SFT answer text: think block with ``trace``, then the label block (``label``:
        the aspect's label value, written by its kind; a one-hot list without an aspect)."""
        text = self.label_kind(aspect).render(label) if aspect is not None else encode_onehot(label)
        return _render_checked(
            self.response_template,
            {"trace": trace.strip(), "label": text},
            f"task {self.name!r}: response_template",
            RESPONSE_VARIABLES,
        )


def _label_kind(task: TaskSpec, aspect: str) -> LabelKind:
    cached = task._kinds.get(aspect)
    if cached is None:
        cached = task._kinds[aspect] = _build_kind(task, aspect)
    return cached


def _build_kind(task: TaskSpec, aspect: str) -> LabelKind:
    spec = task.aspects[aspect]
    names, aliases = tuple(spec.categories), spec.alias_index()
    if task.answer == "single":
        codes = tuple((c, i) for c, i in spec.code_index().items())
        return SingleLabel(names, codes, aliases)
    if task.answer == "dimensions":
        return DimensionLabel(names, tuple(spec.levels or task.levels or ()), aliases)
    codes = tuple((c, i) for c, i in spec.code_index().items()) if spec.codes else ()
    return MultiLabel(names, codes, aliases, task.label_rule(aspect))


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
    _check_constraints(task, lambda loc: located.where(loc) + ": " + _dotted(loc))
    _trial_render(task, lambda key: f"{located.where((key,))}: {key}")
    if overrides is None:
        return task
    merged = _apply(task, overrides)
    task = _validate(merged, lambda loc: "data.task_overrides: " + _dotted(loc))
    _check_constraints(task, lambda loc: "data.task_overrides: " + _dotted(loc))
    _trial_render(task, lambda key: f"data.task_overrides.{key}")
    return task


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _check_constraints(task: TaskSpec, where) -> None:
    """Every way the label constraints do not fit an aspect, as one `UserError` (``where``:
    key path → location text)."""
    lines = []
    for aspect, spec in task.aspects.items():
        own = spec.constraints is not None
        found = spec.constraints or task.constraints
        if found is None:
            continue
        prefix = ("aspects", aspect, "constraints") if own else ("constraints",)
        for key, message in found.problems(spec.code_index(), len(spec.categories)):
            about = "" if own else f" (aspect {aspect})"
            lines.append(f"{where(prefix + key)}: {message}{about}")
    if lines:
        raise UserError("\n".join(dict.fromkeys(lines)))


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
    if o.constraints is not None:
        data["constraints"] = o.constraints or None
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
    """`_check_templates` in a memory- and time-capped child process (`sandbox.isolated`).

    A task that passed is remembered by its content (the check is a pure function of it), so
    a process that loads the same task again does not fork again; a failure is always checked
    anew (its message names where the task came from)."""
    key = digest.text_sha256(task.model_dump_json())
    if key in _RENDERED:
        return
    try:
        sandbox.isolated(_check_templates, task, where)
    except sandbox.TemplateBudgetError as exc:
        raise UserError(f"{where('user_prompt')}: template error: {exc}") from None
    _RENDERED.add(key)


#: Content hashes of the tasks whose templates passed the trial render in this process.
_RENDERED: set[str] = set()


#: Sample values of the kind-specific prompt variables, for the trial render.
_SAMPLE_EXTRA = {
    "gold": "[1, 0, 0, 0, 0]",
    "gold_categories": ["a category"],
    "answer": "[1, 0, 0, 0, 0]",
    "answer_a": "[1, 0, 0, 0, 0]",
    "answer_b": "[0, 1, 0, 0, 0]",
}


def _check_templates(task: TaskSpec, where) -> None:
    """Trial-render every template so unknown variables and syntax errors show at load time."""
    extra = {k: _SAMPLE_EXTRA[k] for k in KIND_VARIABLES[task.kind]}
    for key in ("system_prompt", "user_prompt"):
        for aspect in task.aspects:
            env = {**task.variables(aspect), **extra}
            if key == "user_prompt":
                env["text"] = _SAMPLE_TEXT
            _render_checked(getattr(task, key), env, where(key), task.variable_names)
        if key == "user_prompt" and "text" not in _compile_names(task.user_prompt):
            raise UserError(
                f"{where(key)}: the user prompt never shows the section; add {{{{ text }}}}"
            )
    if task.kind in ("extract", "judge"):  # answers are JSON: the schema must be one we bound
        try:
            check_schema(task.answer_schema())
        except UserError as exc:
            raise UserError(f"{where('fields')}: {exc}") from None
        return
    aspect = next(iter(task.aspects))
    kind = task.label_kind(aspect)
    out = _render_checked(
        task.response_template,
        {"trace": "reasoning", "label": kind.render(kind.example())},
        where("response_template"),
        RESPONSE_VARIABLES,
    )
    read = read_answer(out, kind)
    if not (read.format_ok and _same(read.value, kind.example())):
        raise UserError(
            f"{where('response_template')}: renders {out!r}, which does not match the "
            "response format "
            "'<think>…</think>' then '<label>{{ label }}</label>' that the rewards parse"
        )


def _same(a: Any, b: Any) -> bool:
    return list(a) == list(b) if isinstance(a, (list, tuple)) else a == b


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
