"""Fixtures for the reward tests (`llmscisci_cfg.rewards`)."""

from __future__ import annotations

from llmscisci_cfg.task.kinds import MultiLabel


def kinds(n, rule=None):
    """The one-hot label kind of ``n`` categories (a dict: one per aspect) for the rewards."""
    if isinstance(n, dict):
        return {a: MultiLabel.plain(v) for a, v in n.items()}
    return MultiLabel.plain(n, rule)
