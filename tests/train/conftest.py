"""Fixtures for the training tests (`llmscisci_cfg.train`): tiny runs on CPU."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(isolated_cache):
    """Datasets built here go to a per-session cache, never to ~/.cache."""
