"""Package discovery that pyproject.toml alone cannot express.

Every subpackage of ``llmscisci_cfg`` is found by ``find_packages`` (a new one cannot be
forgotten); the shipped recipes, chat templates and JSON schema live at the top of the
repository and are installed as ``llmscisci_cfg.recipes`` / ``.templates`` / ``.schemas``
through the ``package-dir`` mapping in pyproject.toml.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = ["llmscisci_cfg.recipes", "llmscisci_cfg.templates", "llmscisci_cfg.schemas"]

setup(packages=find_packages(include=["llmscisci_cfg", "llmscisci_cfg.*"]) + DATA_PACKAGES)
