"""What `llmscisci predict` is asked (`PredictOptions`) and what it gives back (`PredictResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PredictOptions:
    output: Path | None = None
    limit: int | None = None
    resume: bool = False
    overwrite: bool = False
    in_process: bool = False
    device: str = "auto"


@dataclass
class PredictResult:
    output: Path
    report_path: Path
    report: dict[str, Any]
