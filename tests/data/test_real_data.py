"""The data stage on the studies' own layouts (../shared/data; skipped when absent): ACL-ARC and
SciCite as fixed split files, the flourishing tweets joined to their codings. Expected counts
are computed here from the files with the csv module, independently of the data stage."""

from __future__ import annotations

import ast
import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from llmscisci_cfg.recipe.loader import load_job
from tests.conftest import REPO
from tests.data_helpers import build_dataset, kind_task, write_recipe

SHARED = REPO.parent / "shared" / "data"
SCICITE = ["background information", "method", "results comparison"]
ACL_ARC = ["BACKGROUND", "USES", "COMPARES_CONTRASTS", "MOTIVATION", "EXTENDS", "FUTURE"]


def _need(folder: str) -> Path:
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"../shared/data/{folder} is not present")
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _citation_recipe(tmp_path: Path, folder: Path, categories, method="sft", **data) -> Path:
    kind_task(tmp_path, "single", categories, "context", "citation_context")
    files = {"train": "train.csv", "validation": "dev.csv", "test": "test.csv"}
    return write_recipe(
        tmp_path,
        {
            "task": "kinds.yaml",
            "splits": {k: str(folder / v) for k, v in files.items()},
            "columns": {"id": "unique_id", "label": {"context": "citation_class_label"}},
            "length_filter": None,
            **data,
        },
        method=method,
    )


def test_acl_arc_split_files(tmp_path):
    folder = _need("acl-arc")
    job = load_job(_citation_recipe(tmp_path, folder, ACL_ARC))
    dataset, rep = build_dataset(job)
    expected = {
        n: _rows(folder / f)
        for n, f in (("train", "train.csv"), ("validation", "dev.csv"), ("test", "test.csv"))
    }
    assert rep.splits == {n: len(rows) for n, rows in expected.items()}  # 1,688 / 114 / 139
    assert rep.dropped == {} and rep.group_overlap == 0
    gold = Counter(ACL_ARC[g] for g in dataset["train"]["gold"])
    assert gold == Counter(r["citation_class_label"] for r in expected["train"])
    assert [r["id"] for r in dataset["test"]] == [r["unique_id"] for r in expected["test"]]


@pytest.mark.slow
def test_scicite_full_train_split_preprocesses(tmp_path):
    folder = _need("scicite")
    job = load_job(_citation_recipe(tmp_path, folder, SCICITE, method="grpo"))
    dataset, rep = build_dataset(job)
    files = {"train": "train.csv", "validation": "dev.csv", "test": "test.csv"}
    rows = {n: _rows(folder / f) for n, f in files.items()}
    assert rep.splits == {n: len(r) for n, r in rows.items()}  # 8,243 / 916 / 1,861
    ids = {n: {r["unique_id"] for r in r_} for n, r_ in rows.items()}
    shared = (ids["train"] & ids["validation"]) | (ids["train"] & ids["test"])
    shared |= ids["validation"] & ids["test"]
    assert rep.group_overlap == len(shared)  # 9 ids are in two files; reported, not moved
    assert rep.per_split["test"]["file_sha256"] == job.splits["test"].sha256
    assert Counter(dataset["test"]["gold"]) == Counter(
        SCICITE.index(r["citation_class_label"]) for r in rows["test"]
    )


def test_flourishing_tweets_joined_to_their_codings(tmp_path):
    folder = _need("flourishing")
    tweets, answers = _rows(folder / "tweets.csv"), _rows(folder / "answers.csv")
    codings = {r["id"]: ast.literal_eval(r["answer"]) for r in answers}
    seen = Counter(k.strip().lower() for c in codings.values() for k in c)
    left_out = min(seen, key=lambda k: (seen[k], k))  # the rarest dimension: not in the task
    kind_task(
        tmp_path,
        "dimensions",
        sorted(set(seen) - {left_out}),
        "tweet",
        "tweet_text",
        ["low", "medium", "high"],
    )
    data = {
        "task": "kinds.yaml",
        "source": {"path": str(folder / "tweets.csv")},
        "columns": {"id": "message_id"},
        "labels": {"path": str(folder / "answers.csv"), "columns": {"tweet": "answer"}},
        "on_bad_label": "drop",
        "length_filter": None,
    }
    dataset, rep = build_dataset(load_job(write_recipe(tmp_path, data, method="sft")))
    ids = [r["message_id"].strip() for r in tweets]
    labelled = [i for i in ids if i in codings]
    bad = [i for i in labelled if left_out in {k.strip().lower() for k in codings[i]}]
    assert rep.labels["labels"] == len(answers) == 2404
    assert rep.labels["labels_without_row"] == len(set(codings) - set(ids))
    assert rep.labels["rows_without_label"] == len(set(ids) - set(codings))
    assert rep.dropped == {"no_label": len(ids) - len(labelled), "bad_label": len(bad)}
    assert rep.examples == len(labelled) - len(bad) and rep.rows == len(tweets)
    assert all(left_out in b[3] for b in rep.bad_labels)  # named, never guessed
    levels = {"low": 1, "medium": 2, "high": 3}
    row = dataset["train"][0]
    want = {k.strip().lower(): levels[v.strip().lower()] for k, v in codings[row["id"]].items()}
    dims = sorted(set(seen) - {left_out})
    assert {dims[i]: v for i, v in enumerate(row["gold"]) if v} == want


@pytest.mark.slow
def test_scicite_test_rows_through_predict_and_eval(cli, tmp_path):
    """The 1,861 SciCite test rows through `predict` (in context) and `eval` (zero-shot on the
    recipe's test and validation files) on CPU with the tiny model."""
    folder = _need("scicite")
    recipe = _citation_recipe(tmp_path, folder, SCICITE, method="grpo")
    fast = ("--max-new-tokens", "32", "--batch-size", "64")
    out = tmp_path / "eval"
    result = cli("eval", "--recipe", recipe, "--model", "builtin:tiny", "--output-dir", out, *fast)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 1861 and len({r["id"] for r in rows}) == 1859
    result = cli(
        "eval", "--recipe", recipe, "--model", "builtin:tiny", "--split", "validation",
        "--output-dir", tmp_path / "eval_dev", *fast,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    predicted = (tmp_path / "eval_dev" / "predictions.jsonl").read_text().splitlines()
    assert len(predicted) == 916

    kind_task(tmp_path, "single", SCICITE, "context", "citation_context")
    label = write_recipe(
        tmp_path,
        {
            "task": "kinds.yaml",
            "source": {"path": str(folder / "test.csv")},
            "columns": {"id": "unique_id", "label": {"context": "citation_class_label"}},
        },
        method="predict",
        generation={"max_new_tokens": 32, "batch_size": 64},
    )
    table = tmp_path / "labels.csv"
    result = cli("predict", label, "--output", table)
    assert result.exit_code == 0, result.output
    labelled = _rows(table)
    assert len(labelled) == 1861
    assert {r["context_pred"] for r in labelled} <= set(SCICITE) | {""}
    report = json.loads(Path(f"{table}.report.json").read_text())
    assert report["rows"] == 1861
