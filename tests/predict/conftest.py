"""Fixtures for the prediction tests (`llmscisci_cfg.predict`): the tiny model, the sample."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(isolated_cache):
    """Datasets built here go to a per-session cache, never to ~/.cache."""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private dataset cache for the module (eval builds the held-out split)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMSCISCI_CACHE", str(path))
        yield path
