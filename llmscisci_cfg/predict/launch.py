"""A prediction over several processes: ``launch.num_processes`` workers through
``accelerate launch``, each predicting its share of the rows (``row % world == rank``) into
its own journal; the launching process merges them afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict.options import PredictOptions
from llmscisci_cfg.recipe.resolve import Job


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``accelerate launch`` sets them)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def launch(
    job: Job, recipe_ref: str, overrides: tuple[str, ...], output: Path, opts: PredictOptions, echo
) -> None:
    """Run ``launch.num_processes`` workers through ``accelerate launch``; each predicts its
    share of the rows into its own journal; this process merges them afterwards."""
    import shutil
    import tempfile

    import yaml

    from llmscisci_cfg.train.launch import accelerate_config

    staging = Path(tempfile.mkdtemp(prefix="llmscisci-predict-"))
    config = staging / "accelerate_config.yaml"
    n = job.recipe.launch.num_processes
    config.write_text(yaml.safe_dump(accelerate_config(job.recipe, job.device)), encoding="utf-8")
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    env = dict(os.environ)
    if job.device == "cpu":
        argv += ["--multi_gpu"]
        env["ACCELERATE_USE_CPU"] = "true"
    argv += ["--num_processes", str(n), "-m", "llmscisci_cfg", "predict", recipe_ref]
    argv += [f"--set={o}" for o in overrides] + [
        "--output",
        str(output),
        "--in-process",
        "--resume",
    ]
    if opts.limit:
        argv += ["--limit", str(opts.limit)]
    echo(f"launch: {' '.join(argv)}")
    try:
        result = subprocess.run(argv, env=env)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if result.returncode != 0:
        raise UserError(
            f"the prediction processes exited with code {result.returncode} (their messages "
            "are above); once that is fixed, rerun with --resume: finished rows are kept"
        )
