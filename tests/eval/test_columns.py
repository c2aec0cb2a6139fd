"""Label columns of one or several tables (llmscisci_cfg.eval.columns): joins on an id column,
qualified and per-aspect column names, cells decoded by the task's codecs with reasons."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from llmscisci_cfg.data.table import Table
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.eval import columns as columns_module
from llmscisci_cfg.eval.columns import decode, decode_columns, expand, join, split_args, task_kinds
from llmscisci_cfg.task.kinds import DimensionLabel, MultiLabel, SingleLabel

SINGLE = SingleLabel(("background", "method", "result"))


def table(name: str, rows: list[dict]) -> Table:
    return Table(Path(name), list(rows[0]), rows)


def test_module_doctest():
    assert doctest.testmod(columns_module).failed == 0


def test_one_table_without_an_id_is_joined_by_row():
    joined = join([table("t.csv", [{"g": "a"}, {"g": "b"}])], None)
    assert joined.ids == ("row 1", "row 2") and joined.column("g")[0] == ["a", "b"]


def test_tables_join_on_the_id_column_in_first_seen_order():
    gold = table("gold.csv", [{"doc": "1", "label": "method"}, {"doc": "2", "label": "result"}])
    preds = table("gpt.jsonl", [{"doc": 3, "label": "method"}, {"doc": 1, "label": "method"}])
    joined = join([gold, preds], "doc")
    assert joined.ids == ("1", "2", "3")
    cells, where = joined.column("gold.csv:label")
    assert cells == ["method", "result", None]
    assert where(2) == "gold.csv: no row for id '3'"
    assert joined.column("gpt:label")[0] == ["method", None, "method"]  # the stem works too
    with pytest.raises(
        UserError, match=r"'label' is in gold.csv and gpt.jsonl; name one as FILE:COLUMN"
    ):
        joined.column("label")
    with pytest.raises(
        UserError, match=r"no column 'lable' in gold.csv, gpt.jsonl \(did you mean 'label'\?\)"
    ):
        joined.column("lable")


@pytest.mark.parametrize(
    ("tables", "id_column", "message"),
    [
        ([[{"doc": "1"}], [{"doc": "1"}]], None, "name the column that joins them with --id"),
        ([[{"doc": "1"}, {"doc": "1"}], [{"doc": "1"}]], "doc", "id '1' repeats"),
        ([[{"doc": ""}]], "doc", "empty id"),
        ([[{"id": "1"}]], "doc", "no column 'doc'"),
    ],
)
def test_join_mistakes_are_user_errors(tables, id_column, message):
    with pytest.raises(UserError, match=message):
        join([table(f"t{i}.csv", rows) for i, rows in enumerate(tables)], id_column)


def test_one_table_with_an_id_groups_rows_into_units():
    joined = join([table("t.csv", [{"paper": "p1"}, {"paper": "p2"}, {"paper": "p1"}])], "paper")
    assert joined.ids == ("p1", "p2", "p1") and joined.n == 3


def test_aspect_templates_expand_or_ask_for_an_aspect():
    assert expand("{aspect}_pred", ["easy", "difficult"], "--columns") == {
        "easy": "easy_pred", "difficult": "difficult_pred",
    }  # fmt: skip
    assert expand("pred", ["easy"], "--columns") == {"easy": "pred"}
    with pytest.raises(UserError, match=r"aspects easy, difficult; write \{aspect\}"):
        expand("pred", ["easy", "difficult"], "--columns")


def test_cells_decode_with_reasons_and_are_never_guessed():
    cells = ["Method", " method ", "2", None, float("nan"), "", "[0, 0, 1]", "uses", True]
    found = decode(SINGLE, "m", cells, lambda i: f"t.csv:{i + 2}")
    assert found.values == [1, 1, 1, None, None, None, 2, None, None]
    assert found.reasons == [
        None,
        None,
        None,
        "missing",
        "missing",
        "empty",
        None,
        "invalid",
        "invalid",
    ]
    assert found.counts() == {"missing": 2, "empty": 1, "invalid": 2}
    assert found.first_invalid.startswith("t.csv:9: unknown category 'uses'")
    assert found.answered == [True] * 3 + [False] * 3 + [True] * 3


def test_dimension_cells_where_an_empty_one_is_never_a_coding():
    kind = DimensionLabel(("happiness", "anxiety"), ("low", "medium", "high"))
    cells = ["{ 'happiness' : 'high' }", "{}", "", {"anxiety": "low"}, "{'joy': 'high'}"]
    pred = decode(kind, "p", cells, str)
    assert pred.values == [[3, 0], [0, 0], None, [0, 1], None]
    assert pred.reasons == [None, None, "empty", None, "invalid"]
    # "{}" codes no dimension; "" is how a CSV writes a missing value, gold or not


def test_a_column_that_never_decodes_is_refused():
    joined = join(
        [table("t.csv", [{"g": "method", "p": "[1, 0, 1]"}, {"g": "result", "p": ""}])], None
    )
    with pytest.raises(UserError, match=r"none of the 1 labels in column 'p' decode as single"):
        decode_columns(joined, {"x": SINGLE}, "p", "--columns")
    blank = join([table("t.csv", [{"g": "method", "p": ""}])], None)
    with pytest.raises(UserError, match=r"column 'p' holds no label \(1 empty\)"):
        decode_columns(blank, {"x": SINGLE}, "p", "--columns")


def test_multi_columns_per_aspect(tmp_path):
    kinds = {"easy": MultiLabel(("a", "b")), "difficult": MultiLabel(("x", "y", "z"))}
    rows = [{"easy_p": "[1, 0]", "difficult_p": "1, 3"}]
    joined = join([table("t.csv", rows)], None)
    found = decode_columns(joined, kinds, "{aspect}_p", "--columns")
    assert found["easy"].values == [[1, 0]] and found["difficult"].values == [[1, 0, 1]]


def test_task_kinds_and_split_args(tmp_path):
    name, kinds = task_kinds("builtin:repro_effort", None, tmp_path)
    assert name == "repro_effort" and list(kinds) == ["easy", "difficult"]
    assert list(task_kinds("builtin:repro_effort", "easy", tmp_path)[1]) == ["easy"]
    with pytest.raises(UserError, match="no aspect 'hard'; aspects: easy, difficult"):
        task_kinds("builtin:repro_effort", "hard", tmp_path)
    with pytest.raises(UserError, match="has kind extract"):
        task_kinds("builtin:repro_extract", None, tmp_path)
    assert split_args(["a.CSV", "b.parquet", "x", "y.csv"]) == (
        ["a.CSV", "b.parquet"],
        ["x", "y.csv"],
    )
