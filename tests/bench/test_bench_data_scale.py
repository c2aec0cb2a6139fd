"""`bench_data_scale`: its corpus (fresh ids, unique sections), its memory sampler, and one
small build in a fresh process through the same child script the benchmark times."""

from __future__ import annotations

import csv
import os

import pytest

from bench import bench_data_scale as bench


def test_corpus_has_fresh_ids_and_unique_sections(tmp_path):
    path = tmp_path / "c.csv"
    size = bench.write_corpus(250, path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert size == path.stat().st_size and len(rows) == 250
    assert list(rows[0]) == bench.COLUMNS
    assert len({r["doi"] for r in rows}) == 250
    easy = [r["easy"] for r in rows if r["easy"].strip()]
    assert len(set(easy)) == len(easy) > 150  # no section repeats, so nothing is remembered
    assert rows[130]["easy"].endswith("(Report 130.)") or not rows[130]["easy"].strip()


def test_memory_reads_this_process():
    found = bench.memory(os.getpid())
    assert found["rss"] > 10_000_000
    if "pss" in found:  # Linux
        assert 0 < found["pss_anon"] <= found["pss"] <= found["rss"]


def test_one_small_build_in_a_fresh_process(tmp_path):
    corpus = tmp_path / "c.csv"
    bench.write_corpus(300, corpus)
    found = bench.measure(corpus, tmp_path / "cache")
    assert found["rows"] == 300 and sum(found["splits"].values()) > 500
    assert found["package"].startswith(str(bench.REPO))
    assert found["wall_seconds"] >= found["build_seconds"] > 0
    assert found["peak"]["rss"] > 100_000_000
    with pytest.raises(AssertionError, match="the baseline ran the current package"):
        bench._same(found, found)
