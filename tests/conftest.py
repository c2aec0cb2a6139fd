"""Shared fixtures: the CLI runner, recipe paths and the optional real MLRC data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

# Tests never reach a model hub: a hub id fails at once instead of after network retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The default run has one pytest-xdist worker per core (pyproject's addopts): one thread each
# for torch's kernels (and for the processes a test starts) instead of every worker using every
# core; on 2 cores the suite takes ~150 s instead of ~200 s (~250 s in one process).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
MLRC_CSV = REPO.parent / "shared" / "data" / "mlrc" / "ReScience_ML_repro_challenge_alpha.csv"


@pytest.fixture
def cli():
    """Invoke ``llmscisci ARGS...``; returns click's Result (exit_code, output)."""
    from llmscisci_cfg.cli import main

    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke


@pytest.fixture
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """One dataset cache per test session, outside the user's home (folders whose tests build
    datasets turn it on for every test in their conftest)."""
    path = tmp_path_factory.getbasetemp() / "llmscisci-cache"
    monkeypatch.setenv("LLMSCISCI_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private dataset cache for the module (the user's ~/.cache is left alone)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMSCISCI_CACHE", str(path))
        yield path


@pytest.fixture
def mlrc_csv() -> Path:
    if not MLRC_CSV.is_file():
        pytest.skip("../shared/data/mlrc is not present")
    return MLRC_CSV


def all_recipes() -> list[Path]:
    return sorted(RECIPES.rglob("*.yaml"))


@pytest.fixture(scope="session")
def server():
    """The suite's one real `llmscisci serve builtin:tiny`, on a free loopback port."""
    from tests.serve_helpers import start, stop

    running = start()
    yield running
    stop(running)


#: The tiny run each method trains once per session (`trained`): the quickstart recipe, cut short.
TRAINED = {
    "sft": (
        "builtin:quickstart/sft_tiny",
        ("train.max_steps=2", "train.save_steps=2", "train.logging_steps=1"),
    ),
    "kto": (
        "builtin:quickstart/kto_tiny",
        ("train.max_steps=2", "train.save_steps=2", "train.logging_steps=1"),
    ),
}


class Trained:
    """Tiny runs trained once per session, by method (`TRAINED`), each with its own dataset
    cache: ``trained(method)`` is the run directory (read it freely; copy it with
    `shutil.copytree` to change it), ``trained.output(method)`` what `llmscisci run` printed."""

    def __init__(self, tmp_path_factory):
        self.factory = tmp_path_factory
        self.runs: dict[str, tuple[Path, str]] = {}

    def __call__(self, method: str) -> Path:
        return self._get(method)[0]

    def output(self, method: str) -> str:
        return self._get(method)[1]

    def _get(self, method: str) -> tuple[Path, str]:
        if method not in self.runs:
            from click.testing import CliRunner

            from llmscisci_cfg.cli import main

            recipe, sets = TRAINED[method]
            run_dir = self.factory.mktemp("trained") / method
            args = ["run", recipe, *[f"--set={s}" for s in sets], "--output-dir", str(run_dir)]
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("LLMSCISCI_CACHE", str(self.factory.mktemp("trained-cache")))
                result = CliRunner().invoke(main, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            self.runs[method] = (run_dir, result.output)
        return self.runs[method]


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """The session's shared tiny runs (see `Trained`)."""
    return Trained(tmp_path_factory)
