"""Provenance without false alarms (issue 24): the dataset's fingerprint depends on the data's
content, never on how a path was written; two test-set sha256 (the rows, and the prompts the
model reads after cleaning and truncation); the build report per split; a shared cache."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from llmscisci_cfg.data.preprocess import cache_key
from llmscisci_cfg.recipe.loader import load_job
from tests.data_helpers import LABELS, build_dataset, reports, write_csv, write_recipe

SFT = {"columns": {"label": LABELS}, "length_filter": None}


def _key(job) -> str:
    return cache_key(job, job.tokenizer())


def test_the_key_depends_on_content_not_on_how_paths_are_written(tmp_path, monkeypatch):
    write_csv(tmp_path / "data.csv", reports(6))
    relative = load_job(write_recipe(tmp_path, {"source": {"path": "data.csv"}, **SFT}))
    absolute = load_job(
        write_recipe(tmp_path, {"source": {"path": str(tmp_path / "data.csv")}, **SFT})
    )
    monkeypatch.chdir(tmp_path)  # the README's --set data.source.path=data.csv, from its folder
    from_cwd = load_job(tmp_path / "recipe.yaml", ("data.source.path=data.csv",))
    other_cache = load_job(
        write_recipe(tmp_path, {"source": {"path": "./data.csv"}, **SFT, "cache_dir": "c2"})
    )
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "data.csv", tmp_path / "copy" / "renamed.csv")
    elsewhere = load_job(write_recipe(tmp_path, {"source": {"path": "copy/renamed.csv"}, **SFT}))
    keys = {_key(j) for j in (relative, absolute, from_cwd, other_cache, elsewhere)}
    assert len(keys) == 1
    write_csv(tmp_path / "data.csv", reports(7))  # other content: another key
    assert (
        _key(load_job(write_recipe(tmp_path, {"source": {"path": "data.csv"}, **SFT}))) not in keys
    )


def test_a_run_from_a_relative_path_is_evaluated_without_a_false_alarm(cli, tmp_path):
    """The case that used to warn: a recipe naming its data relative to itself. Its run
    directory keeps the absolute path (recipe.resolved.yaml); eval rebuilds the same data."""
    folder = tmp_path / "study"
    folder.mkdir()
    write_csv(folder / "data.csv", reports(10))
    recipe = write_recipe(
        folder,
        {"source": {"path": "data.csv"}, **SFT},
        method="sft",
        train={"max_steps": 1, "save_steps": 1, "per_device_batch_size": 2},
        launch={"device": "cpu"},
    )
    run_dir = tmp_path / "run"
    trained = cli("run", recipe, "--output-dir", run_dir)
    assert trained.exit_code == 0, trained.output
    resolved = (run_dir / "recipe.resolved.yaml").read_text()
    assert str(folder / "data.csv") in resolved  # written differently from the recipe
    os.chdir(tmp_path)
    out = tmp_path / "eval"
    args = ("--limit", "1", "--max-new-tokens", "2", "--set", "generation.structured=false")
    result = cli("eval", run_dir, "--output-dir", out, *args)
    assert result.exit_code == 0, result.output
    assert "the rebuilt dataset differs" not in result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["split_matches_training"] is True
    manifest = json.loads((run_dir / "manifest.json").read_text())
    report = manifest["data_report"]
    assert meta["test_set_sha256"] == report["test_set_sha256"]
    assert report["per_split"]["test"]["prompts_sha256"] == report["test_prompts_sha256"]
    import hashlib

    digest = hashlib.sha256((folder / "data.csv").read_bytes()).hexdigest()
    assert manifest["data"]["source"]["sha256"] == digest


def test_two_test_set_hashes_rows_and_what_the_model_read(tmp_path):
    rows = reports(20)
    for r in rows:
        r["difficult"] = "Hard part. " + "details " * 200  # every section over the limit
    write_csv(tmp_path / "r.csv", rows)
    base = {"source": {"path": "r.csv"}, "columns": {"label": LABELS}}
    _, whole = build_dataset(load_job(write_recipe(tmp_path, base | {"length_filter": None})))
    limit = {"percentile": None, "max_prompt_tokens": 400, "strategy": "truncate"}
    _, cut = build_dataset(load_job(write_recipe(tmp_path, base | {"length_filter": limit})))
    assert cut.per_split["test"]["truncated"] == 4 and cut.per_split["train"]["truncated"] == 16
    assert cut.test_set_sha256 == whole.test_set_sha256  # the same rows
    assert cut.test_prompts_sha256 != whole.test_prompts_sha256  # the model read less of them
    prompt = {"task_overrides": {"user_prompt": "Section: {{ text }}"}}
    _, other = build_dataset(
        load_job(write_recipe(tmp_path, base | prompt | {"length_filter": None}))
    )
    assert other.test_set_sha256 == whole.test_set_sha256
    assert other.test_prompts_sha256 not in (whole.test_prompts_sha256, cut.test_prompts_sha256)


def test_the_report_holds_rows_sha256_cleaning_and_truncation_per_split(tmp_path):
    rows = reports(10)
    rows[0]["easy"] = "The code was pre‐ trained." + " text" * 300
    write_csv(tmp_path / "r.csv", rows)
    limit = {"percentile": None, "max_prompt_tokens": 300, "strategy": "truncate"}
    data = {"source": {"path": "r.csv"}, "clean": {}, "length_filter": limit}
    _, rep = build_dataset(load_job(write_recipe(tmp_path, data)))
    per = rep.per_split
    assert set(per) == {"train", "test"}
    for entry in per.values():
        assert {"rows", "documents", "examples", "dropped", "truncated", "cleaning"} <= set(entry)
        assert len(entry["sha256"]) == len(entry["prompts_sha256"]) == 64
    assert per["train"]["rows"] + per["test"]["rows"] == 10
    cleaned = {s: per[s]["cleaning"]["easy"]["sections"] for s in per}
    assert cleaned == {"train": per["train"]["rows"], "test": per["test"]["rows"]}
    assert sum(per[s]["cleaning"]["easy"]["hyphens_joined"] for s in per) == 1
    assert rep.cleaning["easy"]["hyphens_joined"] == 1  # the whole build: the splits summed
    split = next(s for s in per if per[s]["truncated"])
    assert rep.length["splits"][split]["easy"] == {"truncated": 1}


def test_cache_entries_are_readable_as_the_umask_allows(tmp_path):
    write_csv(tmp_path / "r.csv", reports(4))
    old = os.umask(0o022)
    try:
        _, rep = build_dataset(load_job(write_recipe(tmp_path, {"source": {"path": "r.csv"}})))
    finally:
        os.umask(old)
    entry = Path(rep.cache_path)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755  # mkdtemp's 0700 before
    for path in entry.rglob("*"):
        want = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_the_manifest_names_every_data_file(tmp_path):
    from llmscisci_cfg.runs.manifest import data_info

    for name in ("train.csv", "test.csv"):
        write_csv(tmp_path / name, reports(3))
    write_csv(tmp_path / "labels.csv", [{"id": "10.1/doc.000", "e": "[1, 0, 0, 0, 0]"}])
    data = {
        "splits": {"train": "train.csv", "test": "test.csv"},
        "labels": {"path": "labels.csv", "columns": {"easy": "e"}},
        "aspects": ["easy"],
    }
    info = data_info(load_job(write_recipe(tmp_path, data)))
    assert list(info) == ["train", "test", "labels"]
    assert info["labels"]["file"] == str(tmp_path / "labels.csv")
    assert info["train"]["path"] == "train.csv" and len(info["test"]["sha256"]) == 64


@pytest.fixture(autouse=True)
def _back_to_cwd(monkeypatch):
    """Tests here may chdir; pytest's monkeypatch restores it."""
    monkeypatch.chdir(Path.cwd())


def test_a_cache_that_cannot_be_written_costs_a_rebuild_not_the_build(tmp_path, monkeypatch):
    from llmscisci_cfg.data import preprocess

    write_csv(tmp_path / "r.csv", reports(4))
    job = load_job(write_recipe(tmp_path, {"source": {"path": "r.csv"}}))

    def refuse(*_):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(preprocess, "_publish", refuse)
    with pytest.warns(UserWarning, match="dataset cache not written"):
        dataset, rep = build_dataset(job)
    assert len(dataset["train"]) + len(dataset["test"]) == rep.examples == 7  # 1 over the limit
    assert not rep.cache_hit and not list((tmp_path / "cache" / "datasets").iterdir())
