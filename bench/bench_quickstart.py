"""Wall time of the README quickstart (SFT then GRPO on builtin:tiny, plus both evals).

Runs `scripts/quickstart.sh` exactly as `make quickstart` does, in a fresh directory with a
fresh dataset cache, imports included; the median of ``repeats`` runs is reported, with the
format-valid rates the last run printed.

    python -m bench.bench_quickstart [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "quickstart.sh"


def _once(workdir: Path) -> float:
    env = {
        **os.environ,
        "LLMSCISCI_CACHE": str(workdir / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    start = time.perf_counter()
    subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=workdir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def _rate(path: Path, model: str) -> float:
    return json.loads(path.read_text())[model]["overall"]["format_valid_rate"]


def run(repeats: int = 3) -> dict[str, float]:
    seconds = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seconds.append(_once(Path(tmp)))
            sft = Path(tmp, "runs", "quickstart_sft", "eval", "report.json")
            grpo = Path(tmp, "runs", "quickstart_grpo", "eval", "report.json")
            rates = {
                "quickstart_format_valid_untrained": _rate(sft, "reference"),
                "quickstart_format_valid_after_sft": _rate(sft, "policy"),
                "quickstart_format_valid_after_grpo": _rate(grpo, "policy"),
            }
    return {"quickstart_seconds": round(statistics.median(seconds), 1), **rates}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    print(run(parser.parse_args().repeats))
