"""Fixtures for the data-stage tests (`llmscisci_cfg.data`)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(isolated_cache):
    """Datasets built here go to a per-session cache, never to ~/.cache."""
