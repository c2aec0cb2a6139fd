"""Fixtures for the evaluation tests (`llmscisci_cfg.eval`): a copy of the session's SFT run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmscisci_cfg.runs.rundir import FINAL


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, trained, cache) -> Path:
    """The session's 2-step quickstart SFT run (full model, builtin:tiny base), copied for this
    module: its tests write eval folders and the model card into it."""
    run_dir = tmp_path_factory.mktemp("runs") / "sft"
    shutil.copytree(trained("sft"), run_dir)
    assert (run_dir / FINAL / "config.json").is_file()
    return run_dir
