"""llmscisci: declarative fine-tuning of LLMs for scientometrics labelling.

The public Python API mirrors the CLI and stays light to import:

>>> from llmscisci_cfg import load_recipe          # YAML (+ --set overrides) → validated Recipe
>>> recipe = load_recipe("builtin:quickstart/sft_tiny", ["train.max_steps=5"])
>>> recipe.method.name
'sft'

`load_job` resolves a recipe once (paths, task, columns, model, template, input hashes) into
the frozen `Job` every stage reads. `make_plan`, `build_dataset` and `run` import their heavy
machinery only when called.
"""

from __future__ import annotations

from llmscisci_cfg.errors import RecipeError, UserError
from llmscisci_cfg.recipe.loader import load_job, load_recipe
from llmscisci_cfg.recipe.resolve import Job, resolve
from llmscisci_cfg.recipe.schema import Recipe

__all__ = [
    "Job",
    "Recipe",
    "RecipeError",
    "UserError",
    "build_dataset",
    "load_job",
    "load_recipe",
    "make_plan",
    "run",
]
__version__ = "0.1.0"


def make_plan(recipe: str, overrides: list[str] | tuple[str, ...] = (), here: bool = False):
    """What `run` (a training recipe) or `predict` (a predict recipe) would do, as
    `llmscisci plan`; loads no model."""
    job = load_job(recipe, tuple(overrides))
    if job.method == "predict":
        from llmscisci_cfg.predict.plan import PredictPlan

        return PredictPlan.of(recipe, job)
    from llmscisci_cfg.train.plan import make_plan as _make_plan

    return _make_plan(recipe, tuple(overrides), here=here)


def build_dataset(recipe: Recipe | Job):
    """The recipe's dataset (as `llmscisci preprocess`): ``(DatasetDict, BuildReport)``, cached."""
    from llmscisci_cfg.data.preprocess import build_dataset as _build_dataset
    from llmscisci_cfg.train import methods

    job = recipe if isinstance(recipe, Job) else resolve(recipe)
    return _build_dataset(job, methods.get(job.method))


def run(recipe: str, overrides: list[str] | tuple[str, ...] = (), **kwargs):
    """Train a recipe (as `llmscisci run`); returns the run directory."""
    from llmscisci_cfg.train.runner import run as _run

    return _run(recipe, tuple(overrides), **kwargs)
