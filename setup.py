"""Package discovery that pyproject.toml alone cannot express.

Every subpackage of ``llmscisci_cfg`` is found by ``find_packages`` (a new one cannot be
forgotten), and every data folder (assets, recipe groups) by ``find_namespace_packages``, so
setuptools installs them without warning. The shipped recipes, chat templates and JSON schema
live at the top of the repository and are installed as ``llmscisci_cfg.recipes`` /
``.templates`` / ``.schemas`` through the ``package-dir`` mapping in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

DATA_DIRS = {"recipes": "llmscisci_cfg.recipes", "templates": "llmscisci_cfg.templates"}
DATA_DIRS |= {"schemas": "llmscisci_cfg.schemas"}


def data_packages(where: str, name: str) -> list[str]:
    """``name`` and a package per folder below ``where`` (``recipes/quickstart`` → ...)."""
    found = find_namespace_packages(where=where, exclude=["*__pycache__*"])
    return [name] + [f"{name}.{sub}" for sub in found]


packages = find_namespace_packages(
    include=["llmscisci_cfg", "llmscisci_cfg.*"], exclude=["*__pycache__*"]
)
for where, name in DATA_DIRS.items():
    packages += data_packages(where, name)

setup(packages=packages)
