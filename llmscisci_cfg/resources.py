"""Files shipped inside the package: recipes, chat templates, the JSON schema, assets.

Everything goes through `importlib.resources`, so it works from a wheel, an
editable install or a source checkout alike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from llmscisci_cfg.errors import UserError

BUILTIN = "builtin:"
_KINDS = {"recipes", "templates", "schemas", "assets"}


def root(kind: str) -> Path:
    """Directory of a shipped resource kind (``recipes``, ``templates``, ``schemas``, ``assets``)."""
    assert kind in _KINDS, kind
    return Path(str(resources.files(f"llmscisci_cfg.{kind}")))


def shipped(kind: str, name: str) -> Path:
    """Path of one shipped file, or a `UserError` listing what exists."""
    path = root(kind) / name
    if not path.exists():
        have = sorted(
            p.relative_to(root(kind)).as_posix() for p in root(kind).rglob("*") if p.is_file()
        )
        raise UserError(
            f"{BUILTIN}{name}: no such built-in {kind[:-1]}; available: {', '.join(have)}"
        )
    return path


def builtin_recipes() -> list[Path]:
    """All shipped recipe files, sorted."""
    return sorted(root("recipes").rglob("*.yaml"))


def resolve_recipe_path(ref: str) -> Path:
    """``builtin:quickstart/sft_tiny`` → the shipped file; anything else is a plain path."""
    if ref.startswith(BUILTIN):
        name = ref[len(BUILTIN) :]
        return shipped("recipes", name if name.endswith(".yaml") else name + ".yaml")
    return Path(ref)
