"""The streaming build gives the same result however it is cut: CSV parsed in chunks, the
examples pass in one process or several (forked, each over a share of the rows)."""

from __future__ import annotations

import pytest

from llmscisci_cfg.data import build, sources
from llmscisci_cfg.data.sources import load_source
from llmscisci_cfg.data.table import read_table
from llmscisci_cfg.errors import UserError
from tests.data_helpers import LABELS, build_dataset, make_job, reports, write_csv


def test_csv_read_in_chunks_is_the_whole_table(tmp_path, monkeypatch):
    rows = reports(11)
    rows[3]["easy"] = 'A "quoted" cell\nover two lines, with a comma'
    write_csv(tmp_path / "r.csv", rows)
    monkeypatch.setattr(sources, "CSV_CHUNK", 3)
    source = load_source(make_job(tmp_path, "r.csv"))
    whole = read_table(tmp_path / "r.csv")
    assert source.rows.to_list() == whole.rows
    assert source.lines == whole.lines
    gaps = [b - a for a, b in zip(source.lines, source.lines[1:], strict=False)]
    assert gaps[3] == gaps[2] + 1  # the two-line cell of row 3
    assert source.rows.data.num_rows == 11 and source.rows.data.table.column(0).num_chunks == 4


def _build(job):
    dataset, report = build_dataset(job, use_cache=False)
    summary = report.summary()
    return {name: split.to_list() for name, split in dataset.items()}, summary


@pytest.mark.parametrize("method", ["sft", "dpo", "grpo"])
def test_several_processes_build_what_one_builds(tmp_path, monkeypatch, method):
    data = {
        "clean": {},
        "length_filter": {"percentile": 80, "strategy": "truncate"},
        "columns": {"label": LABELS},
    }
    if method == "sft":
        data["traces"] = {"path": "builtin:sample_traces", "missing": "drop"}
    job = make_job(tmp_path, "builtin:sample", method=method, **data)
    monkeypatch.setenv(build.WORKERS_ENV, "1")
    one = _build(job)
    monkeypatch.setattr(build, "ROWS_PER_WORKER", 10)
    monkeypatch.setenv(build.WORKERS_ENV, "3")
    assert build.workers(120) == 3
    three = _build(job)
    assert three == one
    assert (
        one[1]["splits"]["test"] > 0 and sum(one[1]["per_split"]["train"]["dropped"].values()) > 0
    )


def test_an_error_in_a_share_stops_the_build(tmp_path, monkeypatch):
    rows = reports(30)
    rows[25]["y_easy_gpt4"] = "not a label"  # in the last of three shares
    write_csv(tmp_path / "r.csv", rows)
    job = make_job(tmp_path, "r.csv", columns={"label": LABELS}, length_filter=None)
    monkeypatch.setattr(build, "ROWS_PER_WORKER", 10)
    monkeypatch.setenv(build.WORKERS_ENV, "3")
    with pytest.raises(UserError) as info:
        build_dataset(job, use_cache=False)
    line = read_table(tmp_path / "r.csv").lines[25]
    assert f"{tmp_path / 'r.csv'}:{line}: id '10.1/doc.025': column 'y_easy_gpt4'" in str(
        info.value
    )
