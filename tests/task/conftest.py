"""Fixtures for the task tests (`llmscisci_cfg.task`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmscisci_cfg.task.spec import TaskSpec, load_task


@pytest.fixture
def task() -> TaskSpec:
    """The shipped reproducibility-effort task, without overrides."""
    return load_task("builtin:repro_effort", Path("."))
