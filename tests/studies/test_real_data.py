"""The shipped codebooks against the real data in ../shared/data (each test skips when its file
is absent): every gold cell decodes (zero unknown names), the class and intensity counts are
the ones the data's README states, every gold label written as an SFT answer keeps the grammar,
parses back and earns full rewards, and the data stage builds the study recipes' datasets from
the real files (the tiny tokenizer standing in for the hub model's)."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from llmscisci_cfg.rewards.builtin import correct, format_reward, label_valid
from llmscisci_cfg.task.grammar import Constraint, check
from llmscisci_cfg.task.kinds import read_answer
from llmscisci_cfg.task.labels import LabelError
from llmscisci_cfg.task.spec import load_task
from tests.studies.conftest import shared_file

CITATIONS = [
    ("citation_intent", "intent", "scicite"),
    ("citation_function", "function", "acl-arc"),
]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _undecodable(kind, cells) -> Counter:
    """What fails to decode, by message (empty when every cell decodes)."""
    bad: Counter = Counter()
    for cell in cells:
        try:
            kind.decode_gold(cell)
        except LabelError as exc:
            bad[str(exc)] += 1
    return bad


def assert_gold_keeps_the_grammar(task, aspect, golds, most: int = 400) -> None:
    """Each distinct gold label (a seeded sample of ``most`` when there are more), written as
    SFT writes it: in the grammar, parsed back, and scored 1 / 0.5 / 1 by format /
    label_valid / correct."""
    kind = task.label_kind(aspect)
    constraint = Constraint.answer(kind)
    values = sorted({tuple(v) if isinstance(v, (list, tuple)) else v for v in golds})
    values = random.Random(0).sample(values, min(most, len(values)))
    completions = [task.completion("reasoning", v, aspect) for v in values]
    for value, text in zip(values, completions, strict=True):
        assert check(constraint, text), text
        parsed = read_answer(text, kind).value
        assert (tuple(parsed) if isinstance(parsed, (list, tuple)) else parsed) == value
    assert set(format_reward(completions)) == {1.0}
    assert set(label_valid(completions, label_kind=kind)) == {0.5}
    assert set(correct(completions, gold=list(values), label_kind=kind)) == {1.0}


@pytest.mark.parametrize(("name", "aspect", "folder"), CITATIONS)
@pytest.mark.parametrize("split", ["train.csv", "dev.csv", "test.csv"])
def test_every_citation_label_decodes_and_keeps_the_grammar(name, aspect, folder, split):
    rows = _rows(shared_file(folder, split))
    task = load_task(f"builtin:{name}", Path("."))
    kind = task.label_kind(aspect)
    cells = [r["citation_class_label"] for r in rows]
    assert _undecodable(kind, cells) == Counter()
    golds = [kind.decode_gold(c) for c in cells]
    assert set(golds) == set(range(kind.n))  # every class occurs in every split
    assert [kind.categories[g] for g in golds] == cells  # the gold strings are the categories
    assert_gold_keeps_the_grammar(task, aspect, golds)
    prompt = task.messages(aspect, rows[0]["citation_context"])
    assert rows[0]["citation_context"].strip() in prompt[1]["content"]


def test_scicite_and_acl_arc_counts_are_the_readmes():
    scicite = Counter(r["citation_class_label"] for r in _rows(shared_file("scicite", "train.csv")))
    assert scicite == {"background information": 4840, "method": 2294, "results comparison": 1109}
    test = Counter(r["citation_class_label"] for r in _rows(shared_file("scicite", "test.csv")))
    assert test == {"background information": 997, "method": 605, "results comparison": 259}
    acl = Counter(r["citation_class_label"] for r in _rows(shared_file("acl-arc", "train.csv")))
    assert (acl["BACKGROUND"], acl["FUTURE"], sum(acl.values())) == (867, 60, 1688)


def test_every_flourishing_coding_decodes_with_zero_unknown_names():
    rows = _rows(shared_file("flourishing", "answers.csv"))
    task = load_task("builtin:flourishing", Path("."))
    kind = task.label_kind("flourishing")
    assert len(rows) == 2404
    assert _undecodable(kind, [r["answer"] for r in rows]) == Counter()
    values = [kind.decode_gold(r["answer"]) for r in rows]
    present = Counter(kind.categories[i] for v in values for i, k in enumerate(v) if k)
    assert set(present) == set(kind.categories)  # all 46 dimensions occur
    levels = Counter(kind.levels[k - 1] for v in values for k in v if k)
    assert levels == {"high": 5936, "low": 1736, "medium": 1183}
    assert_gold_keeps_the_grammar(task, "flourishing", values)


def test_every_coded_post_is_a_tweet():
    answers = _rows(shared_file("flourishing", "answers.csv"))
    tweets = {r["message_id"] for r in _rows(shared_file("flourishing", "tweets.csv"))}
    assert {r["id"] for r in answers} <= tweets


ROWS = 200  # rows of each real file the data-stage tests build from (speed)
SPLIT_FILES = {"train": "train.csv", "validation": "dev.csv", "test": "test.csv"}


def _head(rows: list[dict[str, str]], path: Path) -> Path:
    """The first `ROWS` rows written to ``path`` (a temporary copy, never kept)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[:ROWS])
    return path


def _posts_and_codings(tmp_path: Path) -> tuple[Path, Path]:
    """The first `ROWS` posts of tweets.csv and the whole of answers.csv (temporary copies)."""
    tweets = _head(_rows(shared_file("flourishing", "tweets.csv")), tmp_path / "tweets.csv")
    return tweets, shared_file("flourishing", "answers.csv")


#: The keys that join the codings to the posts, as the hub flourishing recipes set them (the
#: tiny recipes read a sample with the codings inline).
JOIN = ("data.labels.id=id", "data.labels.columns.flourishing=answer", "data.columns.label=null")


def _summary(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :])


@pytest.mark.parametrize(("recipe", "folder"), [
    ("builtin:citation_intent/sft_llama3.2", "scicite"),
    ("builtin:citation_function/sft_llama3.2", "acl-arc"),
])  # fmt: skip
def test_the_citation_recipes_build_the_studys_splits_from_the_real_files(
    invoke, tmp_path, recipe, folder
):
    """`preprocess` of the hub SFT recipe on the first rows of each of the study's split files
    (the tiny model's tokenizer, the recipe's own llama3 template): each file is its split,
    the test split is exactly the test file's rows, nothing is dropped."""
    files, sets = {}, []
    for split, name in SPLIT_FILES.items():
        rows = _rows(shared_file(folder, name))
        files[split] = _head(rows, tmp_path / name)
        sets.append([r["unique_id"] for r in rows[:ROWS]])
    expected = {split: len(ids) for split, ids in zip(SPLIT_FILES, sets, strict=True)}
    shared = sum(1 for doc in set().union(*sets) if sum(doc in set(ids) for ids in sets) > 1)
    summary = _summary(invoke(
        "preprocess", recipe, "--json",
        *(a for split, path in files.items() for a in ("--set", f"data.splits.{split}={path}")),
        "--set", "model.name_or_path=builtin:tiny", "--set", "model.family=null",
    ))  # fmt: skip
    assert summary["split_by"] == "files" and summary["splits"] == expected
    assert (summary["rows"], summary["examples"], summary["dropped"]) == (sum(expected.values()),) * 2 + ({},)  # fmt: skip
    assert summary["per_split"]["test"]["file"] == str(files["test"])
    assert summary["per_split"]["test"]["examples"] == len(sets[2])
    assert summary["group_overlap"] == shared


def test_the_flourishing_recipe_joins_the_codings_to_the_real_posts(invoke, tmp_path):
    """`preprocess` of the hub SFT recipe on the first posts of tweets.csv with answers.csv
    joined on message_id = id: the coded posts are the examples, 20% of them (by id) held out;
    the uncoded posts are counted as unlabelled, the codings of posts not read as without a
    row."""
    tweets, answers = _posts_and_codings(tmp_path)
    coded = {r["id"] for r in _rows(answers)}
    ids = [r["message_id"] for r in _rows(tweets)]
    with_label = [d for d in ids if d in coded]
    assert 0 < len(with_label) < ROWS  # the first posts hold both kinds
    summary = _summary(invoke(
        "preprocess", "builtin:flourishing/sft_llama3.2", "--json",
        "--set", f"data.source.path={tweets}", "--set", f"data.labels.path={answers}",
        "--set", "model.name_or_path=builtin:tiny", "--set", "model.family=null",
    ))  # fmt: skip
    assert (summary["rows"], summary["examples"]) == (ROWS, len(with_label))
    assert summary["dropped"] == {"no_label": ROWS - len(with_label)}
    held = round(0.2 * len(set(with_label)))
    assert summary["split_by"] == "id"
    assert summary["splits"] == {"train": len(with_label) - held, "test": held}
    join = summary["labels"]
    assert (join["rows"], join["labels"], join["matched"]) == (ROWS, len(coded), len(set(with_label)))  # fmt: skip
    assert join["rows_without_label"] == len(set(ids) - coded)
    assert join["labels_without_row"] == len(coded - set(ids))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("study", "source", "label"),
    [
        ("citation_intent", ("scicite", "train.csv"), ("data.columns.label.intent=citation_class_label",)),
        ("citation_function", ("acl-arc", "train.csv"), ("data.columns.label.function=citation_class_label",)),
        ("flourishing", None, JOIN),
    ],
)  # fmt: skip
def test_tiny_recipes_train_and_label_on_real_rows(invoke, tmp_path, study, source, label):
    """The tiny SFT recipe for one step on real rows (the flourishing posts with their codings
    joined, as the hub recipes read them), then its model labels two of them: every answer in
    the grammar; the flourishing predictions keep the joined coding beside the answer."""
    if source:
        data = ["--set", f"data.source.path={_head(_rows(shared_file(*source)), tmp_path / 'rows.csv')}"]  # fmt: skip
    else:
        tweets, answers = _posts_and_codings(tmp_path)
        data = ["--set", f"data.source.path={tweets}", "--set", f"data.labels.path={answers}"]
    sets = [a for key in label for a in ("--set", key)]
    run_dir = tmp_path / "sft"
    result = invoke(
        "run", f"builtin:{study}/sft_tiny", "--output-dir", run_dir, *data, *sets,
        "--set", "train.max_steps=1", "--set", "train.save_steps=1",
        "--set", "train.per_device_batch_size=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "labels.jsonl"
    result = invoke(
        "predict", f"builtin:{study}/label_tiny", *data, *(sets if not source else ()),
        "--set", f"model.name_or_path={run_dir}", "--output", out, "--limit", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    task = load_task(f"builtin:{study}", Path("."))
    aspect = next(iter(task.aspects))
    kind = task.label_kind(aspect)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert check(Constraint.answer(kind), row[f"{aspect}_raw"])
        assert row[f"{aspect}_pred"] == kind.public(read_answer(row[f"{aspect}_raw"], kind).value)
    if not source:  # the joined coding, or null for a post the teacher did not code
        codings = {r["id"]: r["answer"] for r in _rows(answers)}
        assert [r["answer"] for r in rows] == [codings.get(r["message_id"]) for r in rows]
