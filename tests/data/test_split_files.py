"""Fixed split files (``data.splits``), as studies ship them: each file is its split; load-time
checks name the key; a validation file feeds TRL's eval and ``eval --split validation``."""

from __future__ import annotations

import json

import pytest

from llmscisci_cfg.data.preprocess import eval_split
from llmscisci_cfg.errors import RecipeError, UserError
from llmscisci_cfg.recipe.loader import load_job
from tests.data_helpers import LABELS, build_dataset, report, reports, write_csv, write_recipe

NO_FILTER = {"length_filter": None, "columns": {"label": LABELS}}


def _files(tmp_path, shared: bool = False):
    rows = reports(12)
    write_csv(tmp_path / "train.csv", rows[:8])
    write_csv(tmp_path / "dev.csv", rows[8:10])
    test = rows[10:12] + ([rows[0]] if shared else [])  # rows[0]'s id is in train too
    write_csv(tmp_path / "test.csv", test)
    return {"train": "train.csv", "validation": "dev.csv", "test": "test.csv"}


def test_each_file_is_its_split(tmp_path):
    job = load_job(write_recipe(tmp_path, {"splits": _files(tmp_path), **NO_FILTER}))
    dataset, rep = build_dataset(job)
    assert list(dataset) == ["train", "validation", "test"]
    assert rep.split_by == "files" and rep.rows == 12
    assert rep.splits == {"train": 16, "validation": 4, "test": 4}
    assert set(dataset["validation"]["id"]) == {"10.1/doc.008", "10.1/doc.009"}
    assert set(dataset["test"]["id"]) == {"10.1/doc.010", "10.1/doc.011"}
    per = rep.summary()["per_split"]
    for name, file in (("train", "train.csv"), ("validation", "dev.csv"), ("test", "test.csv")):
        assert per[name]["file"] == str(tmp_path / file)
        assert per[name]["file_sha256"] == job.splits[name].sha256
        assert len(per[name]["sha256"]) == len(per[name]["prompts_sha256"]) == 64
    assert per["validation"]["rows"] == 2 and per["validation"]["examples"] == 4
    assert rep.test_set_sha256 == per["test"]["sha256"] != per["validation"]["sha256"]
    assert rep.group_overlap == 0
    assert job.data.key == "data.splits.train"  # the rows a message names first
    assert list(job.inputs) == ["train", "validation", "test"]


def test_an_id_in_two_files_is_reported_not_moved(tmp_path, capsys):
    job = load_job(write_recipe(tmp_path, {"splits": _files(tmp_path, shared=True), **NO_FILTER}))
    dataset, rep = build_dataset(job)
    assert rep.group_overlap == 1 and rep.splits["test"] == 6
    assert "10.1/doc.000" in set(dataset["train"]["id"]) & set(dataset["test"]["id"])
    assert (
        "1 id(s) are in more than one split file (first: 10.1/doc.000)" in capsys.readouterr().err
    )


def test_without_a_test_file_the_test_split_is_empty(tmp_path):
    write_csv(tmp_path / "train.csv", reports(4))
    job = load_job(write_recipe(tmp_path, {"splits": {"train": "train.csv"}, **NO_FILTER}))
    dataset, rep = build_dataset(job)
    assert list(dataset) == ["train", "test"] and len(dataset["test"]) == 0
    assert rep.splits == {"train": 8, "test": 0} and eval_split(dataset) == "test"


def test_the_length_filter_takes_its_limit_from_the_train_file(tmp_path):
    rows = reports(30)
    write_csv(tmp_path / "train.csv", rows[:10])  # short sections
    write_csv(tmp_path / "test.csv", rows[20:])  # longer ones: all over the train median
    data = {"splits": {"train": "train.csv", "test": "test.csv"}, "columns": {"label": LABELS}}
    job = load_job(write_recipe(tmp_path, data | {"length_filter": {"percentile": 50}}))
    dataset, rep = build_dataset(job)
    assert len(dataset["test"]) == 0 and len(rep.test_excluded) == 20
    assert rep.per_split["test"]["dropped"] == {"prompt_too_long": 20}
    assert 8 <= rep.per_split["train"]["examples"] <= 12


def test_a_validation_file_is_what_trl_evaluates_and_eval_reads(tmp_path):
    """`train.build` hands TRL the validation split as eval_dataset; `eval --split
    validation` reads the same rows (the eval door's `eval_data`)."""
    from llmscisci_cfg.eval.evaluate import eval_data
    from llmscisci_cfg.train.build import build_trainer
    from llmscisci_cfg.train.compile import compile_recipe

    recipe = write_recipe(
        tmp_path,
        {"splits": _files(tmp_path), **NO_FILTER},
        method="sft",
        train={"eval_steps": 1, "max_steps": 1, "per_device_batch_size": 2},
        launch={"device": "cpu"},
    )
    job = load_job(recipe)
    tokenizer = job.tokenizer()
    dataset, _ = build_dataset(job, tokenizer=tokenizer)
    assert eval_split(dataset) == "validation"
    built = build_trainer(job, compile_recipe(job), tokenizer)
    assert len(built.trainer.eval_dataset) == len(dataset["validation"]) == 4
    assert set(built.trainer.eval_dataset["id"]) == set(dataset["validation"]["id"])
    rows = eval_data(job, "validation", None, tokenizer).rows
    assert rows.to_list() == dataset["validation"].to_list()


# ----------------------------------------------------------------------------- load-time checks


@pytest.mark.parametrize(
    ("data", "key", "needle"),
    [
        (
            {"source": {"path": "r.csv"}, "splits": {"train": "train.csv"}},
            "data.splits",
            "give data.source (one table, split by id) or data.splits",
        ),
        (
            {"splits": {"train": "train.csv"}, "split": {"test_fraction": 0.3}},
            "data.split",
            "with data.splits the files are the splits: remove data.split",
        ),
        ({"columns": {"id": "doi"}}, "data", "give the rows: data.source"),
        ({"splits": {"validation": "dev.csv"}}, "data.splits.train", "required key is missing"),
        (
            {"splits": {"train": "train.csv", "dev": "d.csv"}},
            "data.splits.dev",
            "unknown key; valid keys here: train, validation, test",
        ),
    ],
)
def test_recipe_errors_name_the_key(tmp_path, data, key, needle):
    with pytest.raises(RecipeError) as info:
        load_job(write_recipe(tmp_path, data))
    found = [str(p) for p in info.value.problems]
    assert any(f": {key}: " in p and needle in p for p in found), found


def test_predict_labels_one_table_not_split_files(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_job(write_recipe(tmp_path, {"splits": {"train": "t.csv"}}, method="predict"))
    assert "predict labels one table: name it with data.source" in str(info.value)


def test_missing_split_files_are_named_by_key_before_any_model_loads(tmp_path, monkeypatch):
    write_csv(tmp_path / "train.csv", reports(2))
    splits = {"train": "train.csv", "validation": "nope.csv", "test": "gone.csv"}
    job = load_job(write_recipe(tmp_path, {"splits": splits}))

    def no_tokenizer():
        raise AssertionError("the tokenizer was loaded")

    monkeypatch.setattr(type(job), "tokenizer", lambda self: no_tokenizer())
    with pytest.raises(UserError) as info:
        build_dataset(job)
    message = str(info.value)
    assert "data.splits.validation" in message and "nope.csv" in message
    assert "data.splits.test" in message and "gone.csv" in message


def test_a_split_file_without_a_column_is_named(tmp_path):
    write_csv(tmp_path / "train.csv", reports(2))
    rows = [{k: v for k, v in r.items() if k != "difficult"} for r in reports(2)]
    write_csv(tmp_path / "test.csv", rows)
    job = load_job(write_recipe(tmp_path, {"splits": {"train": "train.csv", "test": "test.csv"}}))
    with pytest.raises(UserError) as info:
        build_dataset(job)
    assert f"{tmp_path / 'test.csv'}: column 'difficult' (data.columns.text.difficult)" in str(
        info.value
    )


def test_cli_json_reports_the_splits_as_given(cli, tmp_path):
    recipe = write_recipe(tmp_path, {"splits": _files(tmp_path), **NO_FILTER})
    result = cli("preprocess", recipe, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["split_by"] == "files"
    assert summary["splits"] == {"train": 16, "validation": 4, "test": 4}
    assert {n: e["rows"] for n, e in summary["per_split"].items()} == {
        "train": 8,
        "validation": 2,
        "test": 2,
    }
    text = cli("preprocess", recipe)
    assert f"validation: {tmp_path / 'dev.csv'}: 2 rows, 4 examples" in text.output


def test_repeated_ids_inside_a_file_stay_rows_of_that_split(tmp_path, capsys):
    rows = reports(4) + [report(1, easy="Another context.", difficult="Other text.")]
    write_csv(tmp_path / "train.csv", rows)
    job = load_job(write_recipe(tmp_path, {"splits": {"train": "train.csv"}, **NO_FILTER}))
    _, rep = build_dataset(job)
    assert rep.splits["train"] == 10 and rep.documents["train"] == 4
    assert "1 row(s) repeat an earlier row's id" in capsys.readouterr().err


def test_a_run_with_split_files_loads_its_own_resolved_recipe(tmp_path):
    """The resolved recipe (recipe.resolved.yaml: what eval, reproduce and validate read)
    leaves out the unused id-based split, which the checks refuse beside split files."""
    from llmscisci_cfg.recipe.loader import load_recipe_text
    from llmscisci_cfg.runs.manifest import resolved_yaml

    job = load_job(write_recipe(tmp_path, {"splits": _files(tmp_path), **NO_FILTER}))
    text = resolved_yaml(job)
    assert "splits:" in text and "\n  split:" not in text
    again = load_recipe_text(text)
    files = {name: path.rsplit("/", 1)[-1] for name, path in again.data.splits.files().items()}
    assert files == {"train": "train.csv", "validation": "dev.csv", "test": "test.csv"}
    assert "split" not in again.data.model_fields_set
