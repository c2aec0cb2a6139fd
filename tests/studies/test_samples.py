"""The shipped synthetic samples behind the tiny recipes: the scripts' output, in the real
data's schema, every gold cell readable by its codebook, every category present, and (when
../shared/data is here) no text taken from the real data."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from llmscisci_cfg.resources import BUILTIN_DATA, data_file, root
from llmscisci_cfg.task.spec import load_task
from tests.conftest import REPO
from tests.studies.conftest import FLOURISHING, FUNCTION, INTENT, SHARED, sample_rows

SAMPLE = root("assets") / "sample"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("script", "file"),
    [("make_sample_citations", "citations.csv"), ("make_sample_tweets", "tweets.csv")],
)
def test_the_samples_are_the_scripts_output(tmp_path, script, file):
    _script(script).write(tmp_path)
    assert (tmp_path / file).read_bytes() == (SAMPLE / file).read_bytes()


def test_the_samples_have_builtin_names():
    assert BUILTIN_DATA["sample_citations"] == "sample/citations.csv"
    assert BUILTIN_DATA["sample_tweets"] == "sample/tweets.csv"
    for name in ("sample_citations", "sample_tweets"):
        assert data_file(f"builtin:{name}", Path("."), "data.source.path").is_file()


def test_citations_schema_and_labels():
    rows = sample_rows(INTENT)
    assert list(rows[0]) == ["unique_id", "citation_context", "intent_label", "function_label"]
    assert 100 <= len(rows) <= 130 and len({r["unique_id"] for r in rows}) == len(rows)
    labelled = [r for r in rows if r["citation_context"].strip()]
    assert 1 <= len(rows) - len(labelled) <= 3  # a few empty contexts exercise the drop count
    assert all(r["citation_context"].count("@@CITATION@@") == 1 for r in labelled)
    for study, column in ((INTENT, "intent_label"), (FUNCTION, "function_label")):
        kind = load_task(f"builtin:{study.task}", Path(".")).label_kind(study.aspect)
        counts = Counter(kind.decode_gold(r[column]) for r in labelled)
        assert set(counts) == set(range(kind.n)), study.task  # every category occurs
        assert max(counts.values()) < 0.6 * len(labelled)  # imbalanced, not degenerate
    functions = {r["function_label"]: r["intent_label"] for r in labelled}
    assert functions == {
        "BACKGROUND": "background information",
        "MOTIVATION": "background information",
        "FUTURE": "background information",
        "USES": "method",
        "EXTENDS": "method",
        "COMPARES_CONTRASTS": "results comparison",
    }


def test_tweets_schema_and_codings():
    rows = sample_rows(FLOURISHING)
    assert list(rows[0]) == ["tweet_lang", "message_id", "tweet_text", "answer"]
    assert 100 <= len(rows) <= 130 and len({r["message_id"] for r in rows}) == len(rows)
    kind = load_task("builtin:flourishing", Path(".")).label_kind("flourishing")
    coded = [r for r in rows if r["tweet_text"].strip()]
    values = [kind.decode_gold(r["answer"]) for r in coded]
    present = Counter(len(kind.public(v)) for v in values)
    assert present[0] >= 5 and max(present) >= 3  # some posts code nothing, some several
    levels = Counter(level for v in values for level in kind.public(v).values())
    assert set(levels) == {"low", "medium", "high"}
    names = {name for r in coded for name in _keys(r["answer"])}
    # written as answers.csv writes them, the aliased spellings included
    assert {"financial/material worry", "mastery (ability, capability)"} <= names
    assert all(name == name.lower() for name in names)


def _keys(cell: str) -> list[str]:
    import ast

    return list(ast.literal_eval(cell)) if cell.strip() else []


@pytest.mark.parametrize(
    ("sample", "real", "column"),
    [
        ("citations.csv", ("scicite", "train.csv"), "citation_context"),
        ("citations.csv", ("acl-arc", "train.csv"), "citation_context"),
        ("tweets.csv", ("flourishing", "tweets.csv"), "tweet_text"),
    ],
)
def test_no_sample_text_comes_from_the_real_data(sample, real, column):
    path = SHARED.joinpath(*real)
    if not path.is_file():
        pytest.skip(f"../shared/data/{'/'.join(real)} is not present")
    with open(path, encoding="utf-8", newline="") as f:
        text = " ".join(r[column] for r in csv.DictReader(f))
    with open(SAMPLE / sample, encoding="utf-8", newline="") as f:
        ours = [r[column] for r in csv.DictReader(f) if r[column].strip()]
    sentences = {s.strip() for t in ours for s in t.replace("!", ".").split(". ") if len(s) > 30}
    assert sentences and not [s for s in sentences if s in text]
