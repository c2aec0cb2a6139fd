"""Cold-start cost of `llmscisci validate` on one recipe, against importing TRL's GRPOTrainer.

Each figure is a fresh process (so imports are paid every time); the two commands are run
interleaved and the medians compared, which keeps the ratio honest on a noisy machine.

    python -m bench.bench_validate [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "grpo_gemma.yaml"
VALIDATE = [sys.executable, "-m", "llmscisci_cfg", "validate", str(RECIPE)]
TRL_IMPORT = [sys.executable, "-c", "from trl import GRPOTrainer"]


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - start


def run(repeats: int = 7) -> dict[str, float]:
    """Median seconds of each command over ``repeats`` interleaved fresh processes."""
    _time(VALIDATE), _time(TRL_IMPORT)  # warm the page cache for both
    validate, trl = [], []
    for _ in range(repeats):
        validate.append(_time(VALIDATE))
        trl.append(_time(TRL_IMPORT))
    v, t = statistics.median(validate), statistics.median(trl)
    return {
        "validate_seconds": round(v, 3),
        "trl_import_seconds": round(t, 3),
        "validate_vs_trl_import_ratio": round(t / v, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    print(run(parser.parse_args().repeats))
