"""Fixtures for the benchmark-script tests (`bench/`); ``gpu`` tests skip without CUDA."""

from __future__ import annotations

import pytest

from llmscisci_cfg.recipe.checks import cuda_present


def pytest_collection_modifyitems(config, items):
    """A ``gpu``-marked test run with ``-m gpu`` on a machine without CUDA is skipped, not failed."""
    if cuda_present():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
