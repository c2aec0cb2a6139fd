"""llmscisci: declarative fine-tuning of LLMs for scientometrics labelling.

The public Python API mirrors the CLI and stays light to import:

>>> from llmscisci_cfg import load_recipe          # YAML (+ --set overrides) → validated Recipe
>>> recipe = load_recipe("builtin:quickstart/sft_tiny", ["train.max_steps=5"])
>>> recipe.method.name
'sft'

`plan(...)`, `preprocess(...)` and `run(...)` import their heavy machinery only when called.
"""

from __future__ import annotations

from llmscisci_cfg.errors import RecipeError, UserError
from llmscisci_cfg.loader import load_recipe
from llmscisci_cfg.schema import Recipe

__all__ = ["Recipe", "RecipeError", "UserError", "load_recipe", "plan", "preprocess", "run"]
__version__ = "0.1.0"


def plan(recipe: str, overrides: list[str] | tuple[str, ...] = ()):
    """The compiled plan of a recipe (as `llmscisci plan`); loads no model."""
    from llmscisci_cfg.plan import make_plan

    return make_plan(recipe, tuple(overrides))


def preprocess(recipe: Recipe):
    """Build (or load from cache) the dataset of a recipe: ``(DatasetDict, BuildReport)``."""
    from llmscisci_cfg.preprocess import build_dataset

    return build_dataset(recipe)


def run(recipe: str, overrides: list[str] | tuple[str, ...] = (), **kwargs):
    """Train a recipe (as `llmscisci run`); returns the run directory."""
    from llmscisci_cfg.runner import run as _run

    return _run(recipe, tuple(overrides), **kwargs)
