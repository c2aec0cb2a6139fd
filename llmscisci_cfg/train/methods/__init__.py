"""The training methods, one module each, looked up by name: ``get(job.method)``.

A method is a small frozen `TrainingMethod` (`descriptor`; no class hierarchy): the recipe
section it reads (its schema class, in `recipe.schema`), how its dataset rows are built from
the data stage's method-agnostic examples and which answer columns they carry (it is the
`data.rows.RowBuilder` the data stage takes), its TRL config and trainer and the config kwargs
it sets, whether it needs a frozen reference model, and what the memory estimate needs to know
of it (`MemoryFactors`). Each module of this package that defines ``METHOD`` is found here;
adding a method is a new module and its schema entry (`recipe.schema.METHODS`).

Light at import (no torch/trl): `plan` and `validate` read descriptors without any ML library.

>>> get("dpo").trainer_class, get("dpo").answer_columns
('trl.DPOTrainer', ('chosen', 'rejected'))
"""

from __future__ import annotations

import importlib
import pkgutil

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import method_names
from llmscisci_cfg.train.methods.descriptor import MemoryFactors, TrainingMethod

__all__ = ["REGISTRY", "MemoryFactors", "TrainingMethod", "find", "get"]


def _discover() -> dict[str, TrainingMethod]:
    """Every module's ``METHOD``, in the schema's order; each schema entry that trains has one."""
    found: dict[str, TrainingMethod] = {}
    for info in pkgutil.iter_modules(__path__):
        method = getattr(importlib.import_module(f"{__name__}.{info.name}"), "METHOD", None)
        if isinstance(method, TrainingMethod):
            found[method.name] = method
    names = method_names(trains=True)
    if set(found) != set(names):
        raise RuntimeError(f"training methods {sorted(found)} and schema entries {names} differ")
    return {name: found[name] for name in names}


#: Every training method by name.
REGISTRY: dict[str, TrainingMethod] = _discover()


def get(name: str) -> TrainingMethod:
    """The training method called ``name``; a `UserError` for a method that trains nothing
    (predict) or an unknown name."""
    found = REGISTRY.get(name)
    if found is not None:
        return found
    if name in method_names(trains=False):
        raise UserError(
            f"a {name} recipe (method: {name}) builds no train/test split and trains nothing; "
            f"it reads its table as it is: run `llmscisci {name} RECIPE --limit N` for a sample "
            f"of its prompts and answers, and `llmscisci agree` to compare its labels with gold"
        )
    raise UserError(f"unknown training method {name!r}; choose one of {', '.join(REGISTRY)}")


def find(name: str | None) -> TrainingMethod | None:
    """The training method called ``name``, or None (a manifest from another version)."""
    return REGISTRY.get(name or "")
