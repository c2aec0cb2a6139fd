"""One `run` of a quickstart recipe does each thing once: the task file is parsed once, the
tokenizer loaded once, the data file parsed once and hashed once (one digest serves the
dataset cache key and the manifest)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from llmscisci_cfg import digest
from llmscisci_cfg.data import sources
from llmscisci_cfg.task import spec
from llmscisci_cfg.train.runner import run

STEPS = ("train.max_steps=1", "train.save_steps=1", "train.logging_steps=1")


@pytest.fixture
def counts(monkeypatch) -> Counter:
    """Counters on the task parser, the tokenizer loader, the table reader and the hasher."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    found: Counter = Counter()

    def counted(key, real):
        def wrapper(*args, **kwargs):
            found[key(*args)] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        spec, "load_file", counted(lambda p, *_: ("task", Path(p).name), spec.load_file)
    )
    monkeypatch.setattr(
        sources, "read_source", counted(lambda p, *_: ("parse", Path(p).name), sources.read_source)
    )
    monkeypatch.setattr(
        digest, "content_sha256", counted(lambda p: ("hash", Path(p).name), digest.content_sha256)
    )
    real = PreTrainedTokenizerBase.from_pretrained.__func__

    def load(cls, *args, **kwargs):
        found[("tokenizer", "any")] += 1
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "from_pretrained", classmethod(load))
    return found


@pytest.mark.parametrize(
    ("recipe", "sets"),
    [
        ("builtin:quickstart/sft_tiny", STEPS + ("train.per_device_batch_size=2",)),
        ("builtin:quickstart/grpo_tiny", STEPS + ("model.name_or_path=builtin:tiny",)),
    ],
    ids=["sft", "grpo"],
)
def test_one_run_parses_loads_and_hashes_once(tmp_path, monkeypatch, counts, recipe, sets):
    monkeypatch.setenv("LLMSCISCI_CACHE", str(tmp_path / "cache"))  # a cold run: nothing cached
    run_dir = run(recipe, sets, tmp_path / "run")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert counts[("task", "repro_effort.yaml")] == 1
    assert counts[("tokenizer", "any")] == 1
    assert counts[("parse", "reports.csv")] == 1
    assert counts[("hash", "reports.csv")] == 1
    if "sft" in recipe:  # the traces file too
        assert counts[("hash", "traces.jsonl")] == 1
    # the digest the manifest records is the one the dataset cache key was computed from
    key = manifest["data_report"]["cache_key"]
    entry = Path(os.environ["LLMSCISCI_CACHE"]) / "datasets" / key[:24]
    built = json.loads((entry / "build_report.json").read_text())
    assert built["source_sha256"] == manifest["data"]["source"]["sha256"]
