"""Fixtures for the reward tests (`llmscisci_cfg.rewards`)."""

from __future__ import annotations
