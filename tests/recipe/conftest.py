"""Fixtures for the recipe tests (`llmscisci_cfg.recipe`)."""

from __future__ import annotations
