"""Fixtures for the prediction tests (`llmscisci_cfg.predict`): the tiny model, the sample."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(isolated_cache):
    """Datasets built here go to a per-session cache, never to ~/.cache."""
