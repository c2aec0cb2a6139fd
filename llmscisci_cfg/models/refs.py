"""What a recipe (or a command line) names as its model and chat template, resolved without
loading anything: `ModelRef` and `TemplateRef`, and the reader of a run's ``final/`` folder.

A model reference is one of: ``builtin:NAME`` (the tiny model, weights from a seed), a hub id,
a local model folder, a run directory made by ``llmscisci run`` (its ``final/``), or a run's
``final/`` folder itself. `model_ref` tells them apart; `llmscisci_cfg.models.load` loads them.

>>> ref = model_ref(ModelSpec(name_or_path="builtin:tiny"), Path("."), seed=3)
>>> ref.builtin, ref.family, ref.seed
(True, 'tiny', 3)

Light: no ML library (`validate` and `plan` resolve references too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from llmscisci_cfg import digest, files, resources
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models import chat
from llmscisci_cfg.recipe.schema import ModelSpec, TemplateSpec

#: The files of a run directory that the model side reads (`llmscisci_cfg.runs.rundir` owns
#: the layout; these names are part of it).
MANIFEST, FINAL = "manifest.json", "final"


@dataclass(frozen=True)
class FinalInfo:
    """What a run's ``final/`` holds: a LoRA ``adapter`` over ``base_model``, or a ``full``
    model (``base_seed``: the seed a ``builtin:`` base is rebuilt from)."""

    kind: str
    base_model: str
    base_seed: int | None
    chat_template: str = "final/chat_template.jinja"
    settings: ModelSpec | None = None  # the run's model section: dtype, attention, quantization


def run_dir_of(path: Path) -> Path | None:
    """The run directory ``path`` is (or whose ``final/`` it is), or None."""
    path = Path(path).expanduser()
    for candidate in (path, path.parent if path.name == FINAL else None):
        if candidate is not None and (candidate / MANIFEST).is_file():
            if (candidate / "recipe.resolved.yaml").is_file():
                return candidate.resolve()
    return None


def final_info(run_dir: Path) -> FinalInfo:
    """What ``run_dir/final/`` holds, from the manifest's ``final`` record (the files decide
    the kind when it does not say); a `UserError` when the manifest cannot say which base."""
    where = run_dir / MANIFEST
    try:
        manifest = json.loads(files.read_bytes(where, "manifest.json").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{where}: not readable JSON ({exc})") from None
    info = manifest.get("final") if isinstance(manifest, dict) else None
    info = info if isinstance(info, dict) else {}
    final = run_dir / FINAL
    kind = info.get("kind") or ("adapter" if (final / "adapter_config.json").is_file() else "full")
    base = info.get("base_model")
    if not isinstance(base, str) or not base:
        raise UserError(f"{where}: final.base_model is missing")
    seed = info.get("base_seed")
    recipe = manifest.get("recipe") if isinstance(manifest, dict) else None
    resolved = recipe.get("resolved") if isinstance(recipe, dict) else None
    section = resolved.get("model") if isinstance(resolved, dict) else None
    try:
        settings = ModelSpec.model_validate(section) if isinstance(section, dict) else None
    except ValueError:  # a hand-edited manifest: the caller's settings apply
        settings = None
    return FinalInfo(
        kind=str(kind),
        base_model=base,
        base_seed=seed if isinstance(seed, int) else None,
        settings=settings,
    )


@dataclass(frozen=True)
class ModelRef:
    """A model name resolved: a built-in, a hub id, a local folder, or a run directory.

    ``seed``: the seed a ``builtin:`` model's weights are built from. ``run_dir``: set when the
    name is a run directory (or its ``final/``): generation then uses that run's final model
    and its training chat template.
    """

    name: str  # as written
    family: str  # llama3, gemma3, qwen2, tiny or other
    builtin: bool
    local_dir: Path | None  # an existing local folder (absolute)
    revision: str | None
    trust_remote_code: bool
    recipe_dir: Path
    seed: int = 0
    run_dir: Path | None = None

    @property
    def source(self) -> str:
        """Where to load from: the local folder, else the name (a hub id or ``builtin:``).

        A path-like name (``./x``, ``/x``, ``~/x``, ``a/b/c``) that is not a folder is a
        `UserError` here, when a model is about to load: it cannot be a hub id (``org/name``).
        """
        if self.local_dir is not None:
            return str(self.local_dir)
        name = self.name
        if not self.builtin and (
            name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/")
        ):
            raise UserError(
                f"model.name_or_path: no such directory: {name} (looked in {Path.cwd()} and "
                f"{self.recipe_dir})"
            )
        return name

    @property
    def is_adapter(self) -> bool:
        """A local folder holding a LoRA adapter (an earlier run's ``final/``)."""
        return self.local_dir is not None and (self.local_dir / "adapter_config.json").is_file()

    @property
    def final(self) -> FinalInfo | None:
        """What the run's ``final/`` holds (a run reference only)."""
        return final_info(self.run_dir) if self.run_dir is not None else None

    @property
    def recorded(self) -> str:
        """The model as a run's manifest records it: the local folder, else the name."""
        return str(self.local_dir) if self.local_dir else self.name


def model_ref(spec: ModelSpec, base: Path, seed: int = 0, family: str | None = None) -> ModelRef:
    """``model.name_or_path`` (with the recipe's revision, remote-code switch and family)."""
    name = spec.name_or_path
    local = resources.local_model_dir(name, base)
    return ModelRef(
        name=name,
        family=family or spec.family or chat.infer_family(name),
        builtin=resources.is_builtin(name),
        local_dir=local,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        recipe_dir=base,
        seed=seed,
        run_dir=run_dir_of(local) if local is not None else None,
    )


def named_model(name: str, seed: int = 0) -> ModelRef:
    """A model named on the command line (``serve MODEL``, ``eval --model``): its family's
    defaults, no revision, relative paths from the current folder."""
    return model_ref(ModelSpec(name_or_path=name), Path.cwd(), seed)


def family_template(name: str) -> TemplateRef:
    """The chat template a recipe naming only the model ``name`` would get (its family's)."""
    return template_ref(TemplateSpec(), ModelSpec(name_or_path=name), Path.cwd())


# ----------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class TemplateRef:
    """The chat template: ``name`` is a shipped one, ``file``, ``tokenizer`` (the model's own,
    known once it loads) or ``run`` (the one a run trained with, saved in its ``final/``).

    ``explicit``: the recipe named it (``template.name`` or ``template.file``) rather than
    taking its model family's default; ``override``: use it even for a run trained with
    another (``template.override``).
    """

    name: str
    text: str | None
    path: Path | None = None
    explicit: bool = False
    override: bool = False

    @cached_property
    def sha256(self) -> str | None:
        return digest.text_sha256(self.text) if self.text is not None else None


def template_ref(spec: TemplateSpec, model: ModelSpec, base: Path) -> TemplateRef:
    """The template a recipe trains with: ``template.file``, ``template.name``, else the
    family's default (``tokenizer`` when the family has none)."""
    override = bool(getattr(spec, "override", False))
    if spec.file:
        path = resources.ref_path(spec.file, base)
        return TemplateRef("file", read_template_file(path), path, True, override)
    family = model.family or chat.infer_family(model.name_or_path)
    name = spec.name or chat.FAMILY_TEMPLATE.get(family, chat.TOKENIZER)
    explicit = spec.name is not None
    if name == chat.TOKENIZER:
        return TemplateRef(name, None, explicit=explicit, override=override)
    return TemplateRef(name, chat.shipped_template(name), explicit=explicit, override=override)


def read_template_file(path: Path) -> str:
    if not path.exists():
        raise UserError(f"template.file: file not found: {path}")
    raw = files.read_bytes(path, "template.file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"template.file: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
