"""Fixtures for the evaluation tests (`llmscisci_cfg.eval`): one short quickstart SFT run."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmscisci_cfg.runs.rundir import FINAL

SFT = "builtin:quickstart/sft_tiny"


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, cache) -> Path:
    """A 2-step quickstart SFT run (full model, builtin:tiny base)."""
    from click.testing import CliRunner

    from llmscisci_cfg.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "sft"
    args = ["run", SFT, "--set", "train.max_steps=2", "--set", "train.save_steps=2"]
    result = CliRunner().invoke(main, [*args, "--output-dir", str(run_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (run_dir / FINAL / "config.json").is_file()
    return run_dir
