"""The models ``eval --reference`` puts beside the policy, resolved before anything loads.

``--reference`` takes a value and may be repeated; each value becomes one `Reference`:

- ``reference`` (the option given alone, as before): the recipe's model, labelled
  ``reference``; for a LoRA run, the same weights with the adapter switched off;
- ``base``: the untrained model at the root of the recipe chain, labelled ``base``. A recipe
  whose model is an earlier run's ``final/`` (GRPO after SFT) leads to that run, whose
  manifest names its own base, and so on until a model no run made (a hub id, a folder, or
  ``builtin:NAME`` rebuilt from the seed of the run that started from it);
- a run directory (or its ``final/``): that run's final model with its own tokenizer and chat
  template, labelled by the run's name;
- a model directory (a ``config.json``): that model, with its own tokenizer when the folder
  has one, labelled by the folder's name.

Every reference answers the same prompts as the policy, so `report` pairs each with it:
metrics, intervals and a paired comparison per reference. Checks that concern a reference
(the test set a run was evaluated on) loop over the list `resolve_references` returns.

>>> [r.label for r in resolve_references(["reference"], job)]        # doctest: +SKIP
['reference']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.runs.rundir import FINAL, MANIFEST, RunDir, is_run_dir

if TYPE_CHECKING:
    from llmscisci_cfg.models.refs import ModelRef, TemplateRef
    from llmscisci_cfg.recipe.resolve import Job
    from llmscisci_cfg.recipe.schema import ModelSpec

RECIPE_MODEL = "reference"  # the value of a bare ``--reference``
BASE = "base"
#: Labels a reference cannot take: the policy and report.json's own keys.
RESERVED = (
    "policy", "gold", "kind", "kinds", "comparisons", "degenerate", "frequencies", "bootstrap",
    "test_set_sha256", "warnings", "methods",
)  # fmt: skip
#: Folders of a run directory that hold a model made by that run.
RUN_MODELS = (FINAL, "exported")
Kind = Literal["recipe", "base", "run", "model"]


@dataclass(frozen=True)
class Reference:
    """One model to compare the policy with.

    ``model`` is what loads (a hub id, ``builtin:NAME`` or a directory) and ``seed`` the seed
    a built-in's weights are rebuilt from; ``run_dir`` is the run whose ``final/`` a ``run``
    reference evaluates; ``chain`` lists the run directories a ``base`` was found through
    (empty: the recipe's own model is the base).
    """

    label: str
    kind: Kind
    model: str
    seed: int | None = None
    run_dir: Path | None = None
    chain: tuple[Path, ...] = ()
    what: str = ""

    @property
    def is_recipe_model(self) -> bool:
        """Whether this is the recipe's own model (loaded, or switched to, as the policy's base)."""
        return self.kind == "recipe" or (self.kind == "base" and not self.chain)


def describe_model(name: str, seed: int | None) -> str:
    """A model as reports name it: ``builtin:tiny (weights from seed 0)``, else its name."""
    return f"{name} (weights from seed {seed})" if name.startswith("builtin:") else name


# ----------------------------------------------------------------------------- resolving


def resolve_references(values: Sequence[str], job: Job) -> list[Reference]:
    """One `Reference` per ``--reference`` value, in order; a `UserError` for a value that is
    neither ``base`` nor an existing run or model directory, or one given twice."""
    out: list[Reference] = []
    seen: dict[str, str] = {}
    for value in values:
        ref = _one(value, job)
        key = f"{ref.kind}:{ref.run_dir or ref.model}:{ref.seed}"
        if key in seen:
            raise UserError(f"--reference {value}: given twice; give each reference once")
        seen[key] = value
        taken = {r.label for r in out} | set(RESERVED)
        label, k = ref.label, 2
        while label in taken:
            label, k = f"{ref.label}-{k}", k + 1
        out.append(replace(ref, label=label))
    return out


def _one(value: str, job: Job) -> Reference:
    if value == RECIPE_MODEL:
        name, seed = _recipe_model(job)
        return Reference(RECIPE_MODEL, "recipe", name, seed, what=describe_model(name, seed))
    if value == BASE:
        return base_reference(job)
    return path_reference(value)


def _recipe_model(job: Job) -> tuple[str, int | None]:
    """The recipe's model as a run's manifest records it (`manifest.final_info`)."""
    model = job.model
    name = str(model.local_dir) if model.local_dir else model.name
    return name, job.recipe.train.seed if model.builtin else None


def base_reference(job: Job) -> Reference:
    """``base``: the root of the recipe chain (see the module doc)."""
    name, seed, chain = chain_base(job)
    what = describe_model(name, seed)
    if chain:
        what += f", the untrained base of {chain[0]}"
    return Reference(BASE, "base", name, seed, chain=chain, what=what)


def chain_base(job: Job) -> tuple[str, int | None, tuple[Path, ...]]:
    """``(model, seed, run directories followed)``: from the recipe's model, through every
    run whose ``final/`` (or ``exported/``) is the next model, to the first model no run made.

    A cycle of run directories (hand-edited manifests) is a `UserError`.
    """
    name, seed = _recipe_model(job)
    chain: list[Path] = []
    while True:
        run_dir = _made_by_run(Path(name))
        if run_dir is None:
            return name, seed, tuple(chain)
        if run_dir in chain:
            raise UserError(
                f"{run_dir / MANIFEST}: final.base_model leads back to this run (through "
                f"{', '.join(map(str, chain))}); the chain of base models has a cycle"
            )
        chain.append(run_dir)
        final = RunDir.open(run_dir).final
        name = final.base_model
        seed = (final.base_seed or 0) if name.startswith("builtin:") else None


def _made_by_run(path: Path) -> Path | None:
    """The run directory that made the model folder ``path``, or None."""
    if path.name not in RUN_MODELS or not path.is_dir():
        return None
    run_dir = path.parent.resolve()
    return run_dir if is_run_dir(run_dir) else None


def path_reference(value: str) -> Reference:
    """A run directory (or a model folder inside one) or a model directory."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UserError(
            f"--reference {value}: no such directory; give `base`, a run directory or a model "
            "directory (--reference alone means the recipe's model)"
        )
    run_dir = path.resolve() if is_run_dir(path) else None
    if run_dir is None and path.name == FINAL:
        run_dir = _made_by_run(path)
    if run_dir is not None:
        run = RunDir.open(run_dir)
        final = run.require_final()
        name = run_name(run)
        return Reference(name, "run", str(final), run_dir=run_dir, what=f"{final} (run {name})")
    if not (path / "config.json").is_file():
        raise UserError(
            f"--reference {value}: neither a run directory (no {MANIFEST}) nor a model "
            "directory (no config.json)"
        )
    local = path.resolve()
    return Reference(local.name, "model", str(local), what=str(local))


def run_name(run: RunDir) -> str:
    """The run's recipe name (from its manifest), else its directory's name."""
    recipe = run.manifest.get("recipe")
    resolved = recipe.get("resolved") if isinstance(recipe, dict) else None
    name = resolved.get("name") if isinstance(resolved, dict) else None
    return name if isinstance(name, str) and name else run.path.name


# ----------------------------------------------------------------------------- loading


def load_reference(ref: Reference, job: Job) -> tuple[ModelRef, TemplateRef]:
    """What `models.load.open_model` opens for ``ref``: a run with its own tokenizer and
    training chat template, a model directory with the tokenizer (and template) saved in it,
    else the recipe's template."""
    from llmscisci_cfg.models.refs import named_model

    if ref.kind == "run":
        return named_model(str(ref.run_dir)), job.template
    if ref.is_recipe_model:
        return job.model, job.template
    candidate = with_model(job, ref.model, ref.seed)
    return candidate.model, candidate.template


def reference_settings(job: Job, ref: Reference) -> ModelSpec:
    """The load settings of ``ref``: the recipe's for its own model, else plain (no LoRA, no
    quantization; a run reference loads with its own recipe's)."""
    if ref.is_recipe_model:
        return job.recipe.model
    return with_model(job, ref.model, ref.seed).recipe.model


def with_model(job: Job, name: str, seed: int | None = None) -> Job:
    """``job`` with another model (family re-inferred, no LoRA / quantization) for zero-shot use.

    ``seed``: the seed a built-in's weights are rebuilt from (it becomes ``train.seed``, which
    the data split may follow too: a job for loading a model, not for building data)."""
    recipe = job.recipe
    same_seed = seed is None or seed == recipe.train.seed
    if name == recipe.model.name_or_path and same_seed:
        return job
    model = recipe.model.model_copy(
        update={"name_or_path": name, "family": None, "lora": None, "quantization": None}
    )
    update: dict[str, Any] = {"model": model}
    if not same_seed:
        update["train"] = recipe.train.model_copy(update={"seed": seed})
    copy = recipe.model_copy(update=update)
    copy._source_path = recipe.source_path
    return job.with_recipe(copy)
