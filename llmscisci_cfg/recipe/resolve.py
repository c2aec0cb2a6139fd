"""A loaded `Recipe` resolved once into a frozen `Job`: everything later stages read.

A `Job` holds the recipe together with what every stage used to re-derive from it: absolute
paths, the loaded `TaskSpec`, the column map, the model source, the chat-template text, the
data / traces / template / reward-plug-in files with their sha256, the device and the run
directory. `plan`, `preprocess`, `run` (every rank), `eval` and the manifest all take a Job;
nothing downstream re-reads, re-hashes or re-resolves what it holds.

Content hashes are computed on first use and then kept (`validate` never hashes a data file;
`plan` and `run` hash each input once). Light at import: no ML library.

>>> job = resolve(load_recipe("builtin:quickstart/sft_tiny"))          # doctest: +SKIP
>>> job.model.source, job.template.name, job.columns.aspects           # doctest: +SKIP
('builtin:tiny', 'tiny', ['easy', 'difficult'])
"""

from __future__ import annotations

import os
import shlex
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llmscisci_cfg import digest, files, resources
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models import refs
from llmscisci_cfg.models.genspec import GenSpec, resolve_generation
from llmscisci_cfg.models.refs import ModelRef, TemplateRef
from llmscisci_cfg.recipe.schema import Recipe, RecipePath, RewardSpec
from llmscisci_cfg.task.spec import TaskSpec, load_task

#: Set by `llmscisci run` for the worker processes of a multi-process launch: the recipe
#: reference and ``--set`` values the user typed (workers load the resolved recipe instead).
ORIGIN_ENV = "LLMSCISCI_ORIGIN"


# ----------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class InputFile:
    """A file the run reads (data source, traces): where it is, or why it is not there."""

    key: str  # the recipe key, e.g. data.source.path
    ref: str  # as written in the recipe
    path: Path | None
    problem: str | None = None

    def require(self) -> Path:
        """The path, or the `UserError` saying why there is none."""
        if self.path is None:
            raise UserError(self.problem or f"{self.key}: {self.ref}: not found")
        return self.path

    @cached_property
    def sha256(self) -> str:
        """Content sha256 (``sha256sum`` for a file), computed once."""
        path = self.require()
        if not path.is_dir():
            files.check_regular(path, self.key, files.DATA_LIMIT)
        return digest.content_sha256(path)


@dataclass(frozen=True)
class RewardSource:
    """One reward of the recipe and the file its code lives in (found without importing it)."""

    spec: RewardSpec
    file: Path | None

    @cached_property
    def sha256(self) -> str | None:
        return digest.content_sha256(self.file) if self.file and self.file.is_file() else None


@dataclass(frozen=True)
class ColumnMap:
    """Source columns resolved against the task: per built aspect, text/label/answer columns."""

    id: str
    aspects: list[str]
    text: dict[str, str]
    label: dict[str, str] | None
    chosen: dict[str, str] | None
    rejected: dict[str, str] | None
    answers: dict[str, list[str]] | None = None  # answer columns scored against gold, per aspect
    joined: bool = False  # the label columns are the labels table's (data.labels), joined on id
    answers_key: str = "data.pairs.answers"  # the recipe key of ``answers`` (or method.answers)

    def required(self) -> dict[str, str]:
        """``{recipe key: column}`` of every column the build reads from the rows' table (the
        label columns of a joined labels table are `label_keys`)."""
        out = {"data.columns.id": self.id}
        for name in ("text", "label", "chosen", "rejected"):
            if name == "label" and self.joined:
                continue
            for aspect, column in (getattr(self, name) or {}).items():
                out[f"data.columns.{name}.{aspect}"] = column
        for aspect, columns in (self.answers or {}).items():
            for i, column in enumerate(columns):
                out[f"{self.answers_key}.{aspect}.{i}"] = column
        return out

    def label_key(self, aspect: str) -> str:
        """The recipe key that names ``aspect``'s label column, for messages."""
        if self.joined:
            return f"data.labels.columns.{aspect}"
        return f"data.columns.label.{aspect}"


@dataclass(frozen=True)
class Origin:
    """How the user named the recipe: the reference and the ``--set`` values, in order."""

    ref: str
    overrides: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class Job:
    """A recipe resolved once. Frozen; content hashes are computed on first use and kept."""

    recipe: Recipe
    origin: Origin
    task: TaskSpec
    model: ModelRef
    template: TemplateRef
    data: InputFile  # the rows: data.source, or the train file of data.splits
    traces: InputFile | None
    rewards: tuple[RewardSource, ...]
    device: str  # cuda or cpu, for this machine
    cuda: bool  # whether a CUDA device is visible here
    run_dir: Path
    cache_root: Path
    splits: dict[str, InputFile] | None = None  # data.splits: {split name: file}
    labels: InputFile | None = None  # data.labels

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def method(self) -> str:
        return self.recipe.method.name

    @property
    def source_dir(self) -> Path:
        return self.recipe.source_dir

    def tokenizer(self) -> Any:
        """The recipe's tokenizer with its chat template attached, as training loads it
        (`llmscisci_cfg.models.load.load_tokenizer`)."""
        from llmscisci_cfg.models.load import load_tokenizer

        return load_tokenizer(self.model, self.template, self.assistant_only)

    @property
    def assistant_only(self) -> bool:
        """Whether training reads the template's ``{% generation %}`` masks (a method's
        ``assistant_only_loss``, SFT's): a tokenizer's own template is then checked for them."""
        return bool(getattr(self.recipe.method, "assistant_only_loss", False))

    @property
    def inputs(self) -> dict[str, InputFile]:
        """Every data file the job reads, by role: ``source`` or ``train``/``validation``/
        ``test``, then ``labels`` and ``traces`` (what the manifest records and `reproduce`
        checks)."""
        found = dict(self.splits) if self.splits is not None else {"source": self.data}
        if self.labels is not None:
            found["labels"] = self.labels
        if self.traces is not None:
            found["traces"] = self.traces
        return found

    @cached_property
    def columns(self) -> ColumnMap:
        """The columns to read; a partial per-aspect map or an unknown aspect is a `UserError`."""
        return resolve_columns(self.recipe, self.task)

    @property
    def aspects(self) -> list[str]:
        """The aspects examples are built for (the recipe's, else all of the task's)."""
        return list(self.recipe.data.aspects or self.task.aspects)

    @property
    def categories(self) -> dict[str, list[str]]:
        """Ordered category names per aspect used."""
        return {a: list(self.task.aspects[a].categories) for a in self.aspects}

    @cached_property
    def generation(self) -> GenSpec:
        """How this recipe generates, resolved once (`llmscisci_cfg.models.genspec`)."""
        return resolve_generation(self.recipe, self.task, self.aspects, self.template)

    @property
    def label_kinds(self) -> Any:
        """The answer kind of each aspect used (one kind when every aspect has the same):
        what the rewards and the metrics read labels with."""
        from llmscisci_cfg.rewards.compose import task_label_kinds

        return task_label_kinds(self.task, self.aspects)

    @property
    def num_categories(self) -> int | dict[str, int]:
        """The category count: one int, or one per aspect when they differ."""
        counts = {a: len(names) for a, names in self.categories.items()}
        values = set(counts.values())
        return values.pop() if len(values) == 1 else counts

    @property
    def split_seed(self) -> int:
        """``data.split.seed``, defaulting to ``train.seed``."""
        seed = self.recipe.data.split.seed
        return self.recipe.train.seed if seed is None else seed

    @property
    def recipe_file(self) -> Path | None:
        """The recipe file the user named (None for a recipe built in code)."""
        if self.origin.ref.startswith("<"):
            return None
        try:
            path = resources.recipe_file(self.origin.ref)
        except UserError:
            return None
        return path.resolve() if path.is_file() else None

    def path(self, ref: str) -> Path:
        """A recipe-relative path as an absolute one."""
        return resources.ref_path(ref, self.source_dir)

    def command(self, run_dir: Path | None = None, resume: bool = False) -> list[str]:
        """The ``llmscisci run`` command line that makes (or continues) this run."""
        args = ["llmscisci", "run", self.origin.ref, *[f"--set={o}" for o in self.origin.overrides]]
        args += ["--output-dir", str(run_dir or self.run_dir)]
        return args + (["--resume"] if resume else [])

    def command_text(self, run_dir: Path | None = None, resume: bool = False) -> str:
        return shlex.join(self.command(run_dir, resume))

    def with_recipe(self, recipe: Recipe) -> Job:
        """This job with another recipe (eval's device or model changes), resolved again."""
        return resolve(recipe, self.origin, task=self.task, run_dir=self.run_dir)


# ----------------------------------------------------------------------------- resolving


def resolve(
    recipe: Recipe,
    origin: Origin | None = None,
    *,
    task: TaskSpec | None = None,
    run_dir: str | Path | None = None,
    cuda: bool | None = None,
) -> Job:
    """Resolve ``recipe`` for this machine. ``task`` is the already loaded task, if any."""
    from llmscisci_cfg.recipe.checks import cuda_present

    base = recipe.source_dir
    data = recipe.data
    cuda = cuda_present() if cuda is None else cuda
    if task is None:
        task = load_task(data.task, base, data.task_overrides)
    return Job(
        recipe=recipe,
        origin=origin or Origin(str(recipe.source_path or "<recipe>")),
        task=task,
        model=model_ref(recipe),
        template=template_ref(recipe),
        data=rows_file(data, base),
        traces=input_file("data.traces.path", data.traces.path, base) if data.traces else None,
        splits=split_files(data, base),
        labels=input_file("data.labels.path", data.labels.path, base) if data.labels else None,
        rewards=tuple(reward_source(spec, base) for spec in recipe.rewards or []),
        device=device_for(recipe, cuda),
        cuda=cuda,
        run_dir=Path(run_dir) if run_dir is not None else default_run_dir(recipe),
        cache_root=cache_root(recipe),
    )


def device_for(recipe: Recipe, cuda: bool) -> str:
    """``cuda`` or ``cpu`` for this machine: ``launch.device``, 'auto' being CUDA when present."""
    if recipe.launch.device == "auto":
        return "cuda" if cuda else "cpu"
    return recipe.launch.device


def default_run_dir(recipe: Recipe) -> Path:
    """``train.output_dir`` with ``{name}`` filled in (relative to the cwd)."""
    return Path(recipe.train.output_dir.replace("{name}", recipe.name))


def cache_root(recipe: Recipe) -> Path:
    """``data.cache_dir`` (recipe-relative), else ``$LLMSCISCI_CACHE``, else ~/.cache/llmscisci."""
    if recipe.data.cache_dir:
        return resources.ref_path(recipe.data.cache_dir, recipe.source_dir)
    env = os.environ.get("LLMSCISCI_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmscisci"


def rows_file(data: Any, base: Path) -> InputFile:
    """The table of rows: ``data.source``, else the train file of ``data.splits``."""
    if data.source is not None:
        return input_file("data.source.path", data.source.path, base)
    return input_file("data.splits.train", data.splits.train, base)


def split_files(data: Any, base: Path) -> dict[str, InputFile] | None:
    """``data.splits`` as ``{split name: InputFile}`` (None with an id-based split)."""
    if data.splits is None:
        return None
    return {
        name: input_file(f"data.splits.{name}", ref, base)
        for name, ref in data.splits.files().items()
    }


def input_file(key: str, ref: str, base: Path) -> InputFile:
    try:
        return InputFile(key, ref, resources.data_file(ref, base, key))
    except UserError as exc:
        return InputFile(key, ref, None, str(exc))


def model_ref(recipe: Recipe) -> ModelRef:
    """The recipe's model (``builtin:`` weights from ``train.seed``)."""
    return refs.model_ref(recipe.model, recipe.source_dir, recipe.train.seed)


def template_ref(recipe: Recipe) -> TemplateRef:
    """The template a recipe trains with (`llmscisci_cfg.models.refs.template_ref`)."""
    return refs.template_ref(recipe.template, recipe.model, recipe.source_dir)


def reward_source(spec: RewardSpec, base: Path) -> RewardSource:
    from llmscisci_cfg.rewards.registry import source_file

    return RewardSource(spec, source_file(spec.name, base))


def resolve_columns(recipe: Recipe, task: TaskSpec) -> ColumnMap:
    """The columns to read, with the task's default text columns; unknown aspects are errors."""
    data, cols = recipe.data, recipe.data.columns
    aspects = data.aspects or list(task.aspects)
    _known_aspects(aspects, task, "data.aspects")
    maps: dict[str, dict[str, str] | None] = {}
    joined = data.labels is not None
    for name in ("text", "label", "chosen", "rejected"):
        given = getattr(cols, name)
        key = f"data.columns.{name}"
        if name == "label" and joined:
            given, key = data.labels.columns, "data.labels.columns"
        if given is not None:
            _known_aspects(list(given), task, key)
        if name == "text":
            given = {a: (given or {}).get(a, task.aspects[a].text_column) for a in aspects}
        elif given is not None:
            missing = [a for a in aspects if a not in given]
            if missing:
                raise UserError(
                    f"{key}: no column for aspect(s) {', '.join(missing)}; "
                    f"name one per aspect built ({', '.join(aspects)}), or restrict data.aspects"
                    + (
                        ""
                        if name != "label"
                        else ", or set data.columns.label: null for unlabelled data"
                    )
                )
            given = {a: given[a] for a in aspects}
        maps[name] = given
    answers, key = scored_answers(recipe)
    if answers is not None:
        _known_aspects(list(answers), task, key)
        missing = [a for a in aspects if a not in answers]
        if missing:
            raise UserError(
                f"{key}: no answer columns for aspect(s) {', '.join(missing)}; name "
                f"them per aspect built ({', '.join(aspects)}), or restrict data.aspects"
            )
        answers = {a: list(answers[a]) for a in aspects}
    return ColumnMap(
        id=cols.id, aspects=list(aspects), answers=answers, joined=joined, answers_key=key, **maps
    )


def scored_answers(recipe: Recipe) -> tuple[dict[str, list[str]] | None, str]:
    """The answer columns scored against gold per aspect, and their recipe key: ``data.pairs``
    (answer pairs), or the method's own ``answers`` when it scores answers (`schema.Needs`)."""
    if recipe.data.pairs is not None:
        return recipe.data.pairs.answers, "data.pairs.answers"
    if recipe.method.needs.scored_answers:
        return recipe.method.answers, "method.answers"
    return None, "data.pairs.answers"


def _known_aspects(names: Iterable[str], task: TaskSpec, key: str) -> None:
    unknown = [a for a in names if a not in task.aspects]
    if unknown:
        raise UserError(
            f"{key}: unknown aspect(s) {', '.join(map(repr, unknown))}; task {task.name!r} has "
            f"{', '.join(task.aspects)}"
        )


# ----------------------------------------------------------------------------- absolute form


def absolute_value(kind: str, value: str, base: Path) -> str:
    """One `RecipePath` value made absolute, so the recipe loads from any folder."""
    if resources.is_builtin(value):
        return value
    if kind == "model":
        local = resources.local_model_dir(value, base)
        return str(local) if local is not None else value
    if kind == "plugin":
        file, sep, func = value.rpartition(":")
        is_file = sep and (file.endswith(".py") or "/" in file or "\\" in file)
        return f"{resources.ref_path(file, base)}:{func}" if is_file else value
    return str(resources.ref_path(value, base))


def absolute_recipe(recipe: Recipe) -> Recipe:
    """A copy whose `RecipePath` fields are absolute, so it loads from any directory."""
    copy = recipe.model_copy(deep=True)
    _absolute_fields(copy, recipe.source_dir)
    copy._source_path = recipe.source_path
    return copy


def set_paths_from_cwd(recipe: Recipe, keys: list[tuple]) -> None:
    """``--set`` values that name files are relative to the folder the command runs in (where
    the user typed them), not to the recipe: made absolute here, in place. ``keys``: the key
    paths the ``--set`` options wrote (a whole section too)."""
    cwd = Path.cwd()
    for key in keys:
        parent: Any = None
        value: Any = recipe
        for part in key:
            parent = value
            if isinstance(value, BaseModel) and isinstance(part, str):
                value = getattr(value, part, None)
            elif isinstance(value, list) and isinstance(part, int) and part < len(value):
                value = value[part]
            else:
                value = None
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, BaseModel):
                _absolute_fields(item, cwd)
        if isinstance(value, str) and isinstance(parent, BaseModel):
            info = type(parent).model_fields.get(str(key[-1]))
            kind = _path_kind(info.annotation, info.metadata) if info else None
            if kind is not None:
                object.__setattr__(parent, str(key[-1]), absolute_value(kind, value, cwd))


def _absolute_fields(model: BaseModel, base: Path) -> None:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        kind = _path_kind(info.annotation, info.metadata)
        if kind is not None and isinstance(value, str):
            object.__setattr__(model, name, absolute_value(kind, value, base))
        elif isinstance(value, BaseModel):
            _absolute_fields(value, base)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _absolute_fields(item, base)


def _path_kind(annotation: Any, metadata: list[Any]) -> str | None:
    """The `RecipePath` kind of a field, looking inside ``Optional[...]`` too."""
    for meta in metadata:
        if isinstance(meta, RecipePath):
            return meta.kind
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            found = _path_kind(None, list(arg.__metadata__))
            if found:
                return found
    return None
