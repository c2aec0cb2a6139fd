"""The methods section of an eval report (filled in by a later stage)."""

from __future__ import annotations

from typing import Any


def section(rep: dict[str, Any], meta: Any) -> list[str]:
    return []


def appendix(meta: Any) -> list[str]:
    return []
