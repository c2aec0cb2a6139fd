"""Fixtures for the study tests: the shipped codebooks end to end on the built-in tiny model.

A `Study` names a shipped task, its recipes folder and the sample table its tiny recipes read.
Trained runs are made once per session and shared (`trained`): a test that must change a run
copies it first. Datasets go to one private cache for the session.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RECIPES, REPO

SHARED = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Study:
    task: str  # the shipped task file (builtin:NAME)
    aspect: str
    id_column: str
    text_column: str
    label_column: str  # the sample's gold column
    sample: str  # the builtin: data name of the sample table

    @property
    def recipes(self) -> Path:
        return RECIPES / self.task

    def recipe(self, name: str) -> str:
        return f"builtin:{self.task}/{name}"


INTENT = Study("citation_intent", "intent", "unique_id", "citation_context", "intent_label", "sample_citations")  # fmt: skip
FUNCTION = Study("citation_function", "function", "unique_id", "citation_context", "function_label", "sample_citations")  # fmt: skip
FLOURISHING = Study("flourishing", "flourishing", "message_id", "tweet_text", "answer", "sample_tweets")  # fmt: skip
STUDIES = {s.task: s for s in (INTENT, FUNCTION, FLOURISHING)}


def sample_rows(study: Study) -> list[dict[str, str]]:
    from llmscisci_cfg.resources import BUILTIN_DATA, root

    with open(root("assets") / BUILTIN_DATA[study.sample], encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data, or a skip when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"../shared/data/{'/'.join(parts)} is not present")
    return path


@pytest.fixture(scope="session")
def study_cache(tmp_path_factory):
    """One private dataset cache for the session (never ~/.cache)."""
    path = tmp_path_factory.mktemp("study-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMSCISCI_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def invoke(study_cache):
    """``llmscisci ARGS...`` in-process; returns click's Result."""
    from click.testing import CliRunner

    from llmscisci_cfg.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def trained(tmp_path_factory, invoke):
    """``trained(study)``: the study's tiny SFT run, 2 steps, made once per session."""
    runs: dict[str, Path] = {}

    def get(study: Study) -> Path:
        if study.task not in runs:
            run_dir = tmp_path_factory.mktemp("runs") / f"{study.task}_sft"
            result = invoke(
                "run", study.recipe("sft_tiny"), "--output-dir", run_dir,
                "--set", "train.max_steps=2", "--set", "train.save_steps=2",
                "--set", "train.per_device_batch_size=2",
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            runs[study.task] = run_dir
        return runs[study.task]

    return get
