"""scripts/quickstart.sh's own logic, with a stand-in `llmscisci` on PATH that records its
arguments and writes the eval reports (the real end-to-end run is a slow test in
test_console.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FAKE = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$CALLS"
if [[ "$1" == eval ]]; then
  mkdir -p "$2/eval"
  echo '{"test_set_sha256": "abc", "policy": {"overall": {"format_valid_rate": 0.5}},
        "reference": {"overall": {"format_valid_rate": 0.0}}}' > "$2/eval/report.json"
fi
"""


def _quickstart(tmp_path: Path, **env: str) -> tuple[list[list[str]], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "llmscisci"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    base = {k: v for k, v in os.environ.items() if k != "QUICKSTART_SEED"}
    env = {**base, "PATH": path, "CALLS": str(calls), "QUICKSTART_DIR": "out", **env}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "quickstart.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in calls.read_text().splitlines()], done.stdout


def test_quickstart_runs_the_shipped_recipes_with_their_own_seed(tmp_path):
    calls, stdout = _quickstart(tmp_path)
    assert [c[:2] for c in calls] == [
        ["run", "builtin:quickstart/sft_tiny"],
        ["run", "builtin:quickstart/grpo_tiny"],
        ["eval", "out/quickstart_sft"],
        ["eval", "out/quickstart_grpo"],
    ]
    assert not [c for c in calls if any("seed" in arg for arg in c)]
    assert "after SFT + GRPO       50.0%" in stdout


def test_quickstart_seed_trains_both_steps_on_the_same_split(tmp_path):
    calls, _ = _quickstart(tmp_path, QUICKSTART_SEED="3")
    for run in calls[:2]:
        assert run[-4:] == ["--set", "train.seed=3", "--set", "data.split.seed=0"]
    assert calls[1][-6:-4] == ["--set", "model.name_or_path=out/quickstart_sft/final"]
    assert not [c for c in calls[2:] if any("seed" in arg for arg in c)]
