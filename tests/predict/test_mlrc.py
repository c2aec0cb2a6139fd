"""The issue's must-holds on the real MLRC reports (skipped without ../shared), and sharding
across two CPU processes. Slow: whole tables through the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmscisci_cfg.task.labels import parse_onehot
from tests.conftest import RECIPES, REPO
from tests.predict.test_predict import report_of, rows_of

pytestmark = pytest.mark.slow
ZERO_SHOT = RECIPES / "repro_effort" / "label_zero_shot.yaml"
TINY = ("--set", "model.name_or_path=builtin:tiny", "--set", "generation.max_new_tokens=48")


def _check_mlrc(out, mlrc_csv, raw_text: bool):
    from llmscisci_cfg.data.table import read_table

    source = read_table(mlrc_csv).rows
    rows = rows_of(out)
    assert len(rows) == 70 and [r["doi"] for r in rows] == [r["doi"] for r in source]
    for row, original in zip(rows, source, strict=True):
        for aspect in ("easy", "difficult"):
            if original[aspect].strip():
                assert parse_onehot(row[f"{aspect}_pred"], 5) is not None, row[f"{aspect}_raw"]
            else:
                assert row[f"{aspect}_reason"] == "empty_text"
    report = report_of(out)
    assert report["skipped"] == {"empty_text": 26} and report["predicted"] == 114
    assert report["valid_rate"] == 1.0
    if raw_text:  # uncleaned scrapes run past the tiny model's context: cut and counted
        assert report["truncated"] > 0
    return report


def test_zero_shot_on_the_real_reports(cli, tmp_path, mlrc_csv):
    """Sections longer than the tiny model's 2,048-token context are cut, never skipped."""
    out = tmp_path / "mlrc.csv"
    result = cli(
        "predict",
        ZERO_SHOT,
        "--output",
        out,
        "--set",
        f"data.source.path={mlrc_csv}",
        *TINY,
        "--set",
        "data.clean=null",
    )
    assert result.exit_code == 0, result.output
    report = _check_mlrc(out, mlrc_csv, raw_text=True)
    assert report["aspects"]["difficult"]["truncated"] >= 40  # median ~22,000 characters


def test_the_same_through_serve(cli, tmp_path, mlrc_csv, server):
    out = tmp_path / "mlrc.csv"
    result = cli(
        "predict", ZERO_SHOT, "--output", out, "--set", f"data.source.path={mlrc_csv}", *TINY,
        "--set", "generation.backend=openai", "--set", f"generation.base_url={server.url}",
        "--set", "method.max_prompt_tokens=1900",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    _check_mlrc(out, mlrc_csv, raw_text=False)


def test_two_cpu_processes_shard_the_rows(tmp_path):
    out = tmp_path / "labels.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LLMSCISCI_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "llmscisci_cfg", "predict", "builtin:quickstart/label_tiny",
         "--output", str(out), "--limit", "10", "--set", "launch.num_processes=2",
         "--set", "launch.device=cpu", "--set", "generation.max_new_tokens=32"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--num_processes 2" in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["doi"] for r in rows] == [f"10.0000/llmscisci.sample.{i:03d}" for i in range(1, 11)]
    assert report_of(out)["valid_rate"] == 1.0
