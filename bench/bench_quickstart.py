"""Wall time of the README quickstart (SFT then GRPO on builtin:tiny, plus both evals).

Runs `scripts/quickstart.sh` exactly as `make quickstart` does, in a fresh directory with a
fresh dataset cache, imports included. Run ``i`` of ``repeats`` trains with seed ``i``
(``QUICKSTART_SEED``; seed 0 is the shipped recipes' own, i.e. `make quickstart`): the median
wall time is reported, the format-valid rates of seed 0 (what the README's command prints), and
the rates of every seed in order (how much the figure moves with the seed alone).

    python -m bench.bench_quickstart [--repeats 5]
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


def _once(workdir: Path, seed: int) -> float:
    env = {
        **os.environ,
        "QUICKSTART_SEED": str(seed),
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


STAGES = {"untrained": ("sft", "reference"), "after_sft": ("sft", "policy")}
STAGES["after_grpo"] = ("grpo", "policy")


def run(repeats: int = 5) -> dict[str, float | list[float]]:
    seconds, rates = [], {stage: [] for stage in STAGES}
    for seed in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seconds.append(_once(Path(tmp), seed))
            for stage, (step, model) in STAGES.items():
                report = Path(tmp, "runs", f"quickstart_{step}", "eval", "report.json")
                rates[stage].append(_rate(report, model))
    out = {"quickstart_seconds": round(statistics.median(seconds), 1)}
    for stage, values in rates.items():
        out[f"quickstart_format_valid_{stage}"] = values[0]
        if repeats > 1:
            out[f"quickstart_format_valid_{stage}_per_seed"] = [round(v, 3) for v in values]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    print(run(parser.parse_args().repeats))
