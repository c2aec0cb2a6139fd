"""Labels from a second table joined on the id (``data.labels``), decoded with the task's answer
kind: unmatched ids reported both ways, unlabelled rows left out of training but still read by
``predict``, unreadable labels counted and named, never guessed."""

from __future__ import annotations

import json

import pytest

from llmscisci_cfg.data.labels import join_table
from llmscisci_cfg.data.table import read_table
from llmscisci_cfg.errors import RecipeError, UserError
from llmscisci_cfg.recipe.loader import load_job
from tests.data_helpers import build_dataset, kind_task, write_csv, write_recipe

DIMENSIONS = ["happiness", "anxiety", "having hope"]
LEVELS = ["low", "medium", "high"]


def _tweets(tmp_path, n: int = 30, labelled=range(0, 40, 2), answer=None):
    """``n`` tweets (ids 0..n-1) and labels for ``labelled`` ids (some without a tweet)."""
    kind_task(tmp_path, "dimensions", DIMENSIONS, "tweet", "tweet_text", LEVELS)
    tweets = [
        {"tweet_lang": "en", "message_id": str(i), "tweet_text": f"Tweet number {i}."}
        for i in range(n)
    ]
    write_csv(tmp_path / "tweets.csv", tweets)
    answer = answer or (lambda i: "{ 'happiness' : 'high', 'Having  Hope': 'low' }")
    write_csv(tmp_path / "answers.csv", [{"id": str(i), "answer": answer(i)} for i in labelled])


def _data(**extra):
    return {
        "task": "kinds.yaml",
        "source": {"path": "tweets.csv"},
        "columns": {"id": "message_id"},
        "labels": {"path": "answers.csv", "columns": {"tweet": "answer"}},
        "length_filter": None,
        **extra,
    }


def test_join_reports_unmatched_ids_both_ways(tmp_path):
    _tweets(tmp_path)  # tweets 0..29; labels for 0, 2, ..., 38
    dataset, rep = build_dataset(load_job(write_recipe(tmp_path, _data(), method="sft")))
    assert rep.labels == {
        "rows": 30,
        "labels": 20,
        "matched": 15,
        "labels_without_row": 5,
        "rows_without_label": 15,
        "first_labels_without_row": ["30", "32", "34", "36", "38"],
        "first_rows_without_label": [str(i) for i in range(1, 20, 2)],
    }
    assert rep.dropped == {"no_label": 15} and rep.examples == 15
    assert rep.examples + sum(rep.dropped.values()) == rep.rows * 1  # one aspect
    built = {r["id"]: r for split in dataset.values() for r in split}
    assert set(built) == {str(i) for i in range(0, 30, 2)}
    # dimensions gold: one level index per dimension (0 absent), names matched loosely
    assert built["4"]["gold"] == [3, 0, 1]
    assert built["4"]["completion"][0]["content"].endswith(
        '<label>\n{"happiness": "high", "having hope": "low"}\n</label>'
    )


def test_the_split_holds_out_labelled_documents_only(tmp_path):
    _tweets(tmp_path, n=100, labelled=range(0, 100, 5))  # 20 of 100 tweets labelled
    job = load_job(write_recipe(tmp_path, _data(), method="sft"))
    dataset, rep = build_dataset(job)
    assert rep.splits == {"train": 16, "test": 4}  # 20 % of the 20 labelled documents
    assert {int(i) % 5 for i in dataset["test"]["id"]} == {0}
    assert rep.per_split["train"]["rows"] + rep.per_split["test"]["rows"] == 100


def test_an_unknown_dimension_is_counted_and_named_never_guessed(tmp_path):
    def answer(i):
        return "{ 'happiness': 'high', 'joy': 'low' }" if i % 4 == 0 else "{ 'anxiety': 'low' }"

    _tweets(tmp_path, answer=answer)
    job = load_job(write_recipe(tmp_path, _data(on_bad_label="drop")))
    dataset, rep = build_dataset(job)
    assert rep.dropped == {"bad_label": 8, "no_label": 15}  # ids 0, 4, ..., 28
    assert {tuple(r["gold"]) for s in dataset.values() for r in s} == {(0, 1, 0)}
    first = rep.bad_labels[0]
    assert first == ["0", "tweet", f"{tmp_path / 'answers.csv'}:2", "unknown dimension 'joy'"]
    assert len(rep.bad_labels) == 8 and rep.summary()["bad_labels"] == rep.bad_labels

    job = load_job(write_recipe(tmp_path, _data()))  # on_bad_label: error (the default)
    with pytest.raises(UserError) as info:
        build_dataset(job)
    assert str(info.value) == (
        f"{tmp_path / 'answers.csv'}:2: id '0': column 'answer' (data.labels.columns.tweet): "
        "unknown dimension 'joy'; fix the label, or set data.on_bad_label: drop to skip such rows"
    )


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        (
            [{"id": "1", "answer": "{}"}, {"id": "2", "answer": "{}"}, {"id": "1", "answer": "{}"}],
            "answers.csv:4: id '1' (data.labels.id 'id') is also the id at {a}:2; the labels "
            "table needs one row per id",
        ),
        ([{"id": " ", "answer": "{}"}], "answers.csv:2: empty id (column 'id', data.labels.id)"),
        ([{"ident": "1", "answer": "{}"}], "column 'id' (data.labels.id) not found"),
    ],
)
def test_a_labels_table_needs_one_row_per_id(tmp_path, rows, needle):
    _tweets(tmp_path)
    write_csv(tmp_path / "answers.csv", rows)
    with pytest.raises(UserError) as info:
        build_dataset(load_job(write_recipe(tmp_path, _data())))
    assert needle.format(a=tmp_path / "answers.csv") in str(info.value)


@pytest.mark.parametrize(
    ("extra", "key", "needle"),
    [
        (
            {"columns": {"id": "message_id", "label": {"tweet": "x"}}},
            "data.columns.label",
            "remove",
        ),
        (
            {"labels": {"path": "answers.csv", "columns": {"tweets": "answer"}}},
            "data.labels.columns",
            "unknown aspect 'tweets'",
        ),
        ({"labels": {"path": "answers.csv", "columns": {}}}, "data.labels.columns", "at least one"),
    ],
)
def test_recipe_errors_name_the_key(tmp_path, extra, key, needle):
    _tweets(tmp_path)
    with pytest.raises(RecipeError) as info:
        load_job(write_recipe(tmp_path, _data(**extra)))
    assert any(f": {key}: " in str(p) and needle in str(p) for p in info.value.problems), str(
        info.value
    )


def test_predict_reads_every_row_with_its_label_or_none(tmp_path):
    from llmscisci_cfg.predict.table import read_input

    _tweets(tmp_path)
    job = load_job(write_recipe(tmp_path, _data(), method="predict"))
    joined = join_table(read_table(tmp_path / "tweets.csv"), job)
    assert joined.columns == ["tweet_lang", "message_id", "tweet_text", "answer"]
    assert len(joined.rows) == 30
    assert joined.rows[1]["answer"] is None and joined.rows[2]["answer"].startswith("{")
    rows = read_input(job, None).rows  # what `predict` labels: every tweet
    assert [r["message_id"] for r in rows] == [str(i) for i in range(30)]
    assert rows[4]["answer"] == joined.rows[4]["answer"]


def test_a_label_column_the_rows_have_too_is_refused(tmp_path):
    _tweets(tmp_path)
    write_csv(tmp_path / "answers.csv", [{"id": "1", "tweet_text": "{}"}])
    data = _data(labels={"path": "answers.csv", "columns": {"tweet": "tweet_text"}})
    job = load_job(write_recipe(tmp_path, data, method="predict"))
    with pytest.raises(UserError, match="already has the column\\(s\\) 'tweet_text'"):
        join_table(read_table(tmp_path / "tweets.csv"), job)


def test_single_answers_are_category_indices(tmp_path):
    categories = ["background information", "method", "results comparison"]
    kind_task(tmp_path, "single", categories, "context", "citation_context")
    labels = ["method", "Background  Information", "RESULTS comparison", "3", "methods"]
    rows = [
        {"unique_id": f"p{i}", "citation_context": f"Context {i}.", "label": label}
        for i, label in enumerate(labels)
    ]
    write_csv(tmp_path / "train.csv", rows)
    data = {
        "task": "kinds.yaml",
        "splits": {"train": "train.csv"},
        "columns": {"id": "unique_id", "label": {"context": "label"}},
        "on_bad_label": "drop",
        "length_filter": None,
    }
    dataset, rep = build_dataset(load_job(write_recipe(tmp_path, data, method="sft")))
    assert dataset["train"].features["gold"].dtype == "int64"
    assert dataset["train"]["gold"] == [1, 0, 2, 2]  # a name, any case and spacing, or a code
    assert rep.dropped == {"bad_label": 1}
    assert rep.bad_labels[0][0] == "p4" and "unknown category 'methods'" in rep.bad_labels[0][3]
    answer = dataset["train"][0]["completion"][0]["content"]
    assert answer.endswith("<label>\nmethod\n</label>")


def test_cli_prints_the_join(cli, tmp_path):
    _tweets(tmp_path)
    recipe = write_recipe(tmp_path, _data())
    result = cli("preprocess", recipe)
    assert result.exit_code == 0, result.output
    assert (
        "labels join:   15 of 20 label rows matched; 5 labels without a row, 15 row ids "
        "without a label (left out, no_label)"
    ) in result.output
    assert "  labels without row: 30, 32, 34, 36, 38" in result.output
    summary = json.loads(cli("preprocess", recipe, "--json").stdout)
    assert summary["labels"]["rows_without_label"] == 15


def test_labels_join_split_files_too(tmp_path):
    _tweets(tmp_path)  # labels for the even ids 0..38
    tweets = read_table(tmp_path / "tweets.csv").rows
    write_csv(tmp_path / "train.csv", tweets[:20])
    write_csv(tmp_path / "test.csv", tweets[20:])
    data = _data(splits={"train": "train.csv", "test": "test.csv"})
    del data["source"]
    dataset, rep = build_dataset(load_job(write_recipe(tmp_path, data, method="sft")))
    assert rep.splits == {"train": 10, "test": 5}
    assert rep.per_split["test"]["dropped"] == {"no_label": 5}
    assert rep.labels["rows"] == 30 and rep.labels["labels_without_row"] == 5
    assert sorted(dataset["test"]["id"], key=int) == ["20", "22", "24", "26", "28"]


def test_the_methods_paragraph_names_the_split_files_and_the_labels_table(tmp_path):
    """What a paper's methods section needs: each split file and the labels table by sha256,
    and no seeded hold-out that did not happen."""
    from llmscisci_cfg.digest import content_sha256
    from llmscisci_cfg.eval import methods

    test_labels_join_split_files_too(tmp_path)
    data = _data(splits={"train": "train.csv", "test": "test.csv"})
    del data["source"]
    job = load_job(write_recipe(tmp_path, data, method="sft"))
    _, rep = build_dataset(job)
    text = methods._data_sentence(methods._data(job, rep, "test", None), methods._split(job))
    sha = {name: content_sha256(tmp_path / name)[:12] for name in ("train.csv", "test.csv")}
    answers = content_sha256(tmp_path / "answers.csv")[:12]
    assert text.startswith(
        f"Data: the split files train train.csv (sha256 {sha['train.csv']}), "
        f"test test.csv (sha256 {sha['test.csv']}), 30 rows read, 15 examples built"
    ), text
    assert f"gold labels joined on the id from answers.csv (sha256 {answers})" in text, text
    assert "split: fixed split files, as given; 10 train examples" in text, text
    assert "held out" not in text and "seed" not in text
