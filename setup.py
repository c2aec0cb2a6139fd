"""Package discovery that pyproject.toml alone cannot express, and the source commit.

Every subpackage of ``llmscisci_cfg`` is found by ``find_packages`` (a new one cannot be
forgotten), and every data folder (assets, recipe groups) by ``find_namespace_packages``, so
setuptools installs them without warning. The shipped recipes, chat templates and JSON schema
live at the top of the repository and are installed as ``llmscisci_cfg.recipes`` /
``.templates`` / ``.schemas`` through the ``package-dir`` mapping in pyproject.toml.

A built (non-editable) package carries ``llmscisci_cfg/_build_commit.json``: the git commit
it was built from, which every run manifest records (`runs.manifest.source_commit`; an
editable install reads its checkout instead).
"""

import json
import subprocess
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

DATA_DIRS = {"recipes": "llmscisci_cfg.recipes", "templates": "llmscisci_cfg.templates"}
DATA_DIRS |= {"schemas": "llmscisci_cfg.schemas"}
BUILD_COMMIT = "_build_commit.json"  # runs.manifest.BUILD_COMMIT
HERE = Path(__file__).resolve().parent


def data_packages(where: str, name: str) -> list[str]:
    """``name`` and a package per folder below ``where`` (``recipes/quickstart`` → ...)."""
    found = find_namespace_packages(where=where, exclude=["*__pycache__*"])
    return [name] + [f"{name}.{sub}" for sub in found]


def source_commit() -> dict | None:
    """``{"commit", "dirty"}`` of the git checkout this setup.py is tracked in, or None (an
    sdist, no git)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(HERE), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "setup.py") is None:
        return None
    sha = git("rev-parse", "HEAD")
    return {"commit": sha, "dirty": bool(git("status", "--porcelain"))} if sha else None


class BuildPyWithCommit(build_py):
    """``build_py`` that also writes `BUILD_COMMIT` into the built package."""

    def run(self):
        super().run()
        info = None if getattr(self, "editable_mode", False) else source_commit()
        if info:
            target = Path(self.build_lib, "llmscisci_cfg", BUILD_COMMIT)
            target.write_text(json.dumps(info) + "\n", encoding="utf-8")


packages = find_namespace_packages(
    include=["llmscisci_cfg", "llmscisci_cfg.*"], exclude=["*__pycache__*"]
)
for where, name in DATA_DIRS.items():
    packages += data_packages(where, name)

setup(packages=packages, cmdclass={"build_py": BuildPyWithCommit})
