"""A reward with spread on an untrained model, so the GRPO parity job has non-zero losses."""

from __future__ import annotations


def completion_chars(completions, **kwargs) -> list[float]:
    """Characters in the completion / 100 (chat message lists or strings)."""
    return [len(c[0]["content"] if isinstance(c, list) else c) / 100 for c in completions]
