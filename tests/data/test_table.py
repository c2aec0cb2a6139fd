"""`read_table` / `write_table`: round trips keep every column and the row order; every user
mistake is a `UserError` naming the file; writes are atomic."""

from __future__ import annotations

import doctest
import json
import os
from pathlib import Path

import pytest

from llmscisci_cfg.data import table as table_module
from llmscisci_cfg.data.table import read_table, write_table
from llmscisci_cfg.errors import UserError

COLUMNS = ["zeta", "id", "label", "note"]  # not alphabetical: the order must survive
ROWS = [
    {"zeta": "z1", "id": 3, "label": [1, 0, 1, 0, 0], "note": None},
    {"zeta": "z2", "id": 1, "label": [0, 0, 0, 0, 1], "note": "NA"},
    {"zeta": "z3", "id": 2, "label": [0, 1, 0, 0, 0], "note": 'ok, "quoted"\nnewline'},
]


def test_module_doctest():
    assert doctest.testmod(table_module).failed == 0


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_typed_round_trip_keeps_columns_rows_and_types(tmp_path, suffix):
    path = write_table(tmp_path / f"t{suffix}", ROWS, COLUMNS)
    table = read_table(path)
    assert table.columns == COLUMNS
    assert table.rows == ROWS
    assert table.column("id") == [3, 1, 2]


def test_csv_round_trip_writes_text_and_lists_as_json(tmp_path):
    path = write_table(tmp_path / "t.csv", ROWS, COLUMNS)
    table = read_table(path)
    assert table.columns == COLUMNS
    assert table.rows == [
        {"zeta": "z1", "id": "3", "label": "[1, 0, 1, 0, 0]", "note": ""},
        {"zeta": "z2", "id": "1", "label": "[0, 0, 0, 0, 1]", "note": "NA"},
        {"zeta": "z3", "id": "2", "label": "[0, 1, 0, 0, 0]", "note": 'ok, "quoted"\nnewline'},
    ]
    assert table.lines == (2, 3, 4)
    assert table.where(2) == f"{path}:4"
    assert json.loads(table.rows[0]["label"]) == [1, 0, 1, 0, 0]


def test_csv_cells_are_text_exactly_as_written(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\nNA,,01\nnull, x ,1.0\n", encoding="utf-8")
    assert read_table(path).rows == [
        {"a": "NA", "b": "", "c": "01"},
        {"a": "null", "b": " x ", "c": "1.0"},
    ]


def test_columns_default_to_first_seen_keys_and_missing_keys_are_none(tmp_path):
    path = write_table(tmp_path / "t.jsonl", [{"b": 1}, {"a": 2, "b": 3}])
    table = read_table(path)
    assert table.columns == ["b", "a"]
    assert table.rows == [{"b": 1, "a": None}, {"b": 3, "a": 2}]
    assert table.lines == (1, 2)


def test_columns_choose_what_is_written(tmp_path):
    path = write_table(tmp_path / "t.csv", [{"a": 1, "b": 2, "c": 3}], ["c", "a"])
    assert path.read_text(encoding="utf-8") == "c,a\n3,1\n"


def test_existing_file_is_replaced(tmp_path):
    path = tmp_path / "t.jsonl"
    write_table(path, [{"a": 1}])
    write_table(path, [{"a": 2}])
    assert read_table(path).rows == [{"a": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]


# ----------------------------------------------------------------------------- bad input


def _problem(path: Path) -> str:
    with pytest.raises(UserError) as info:
        read_table(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_missing_file(tmp_path):
    assert "no such file" in _problem(tmp_path / "absent.csv")


def test_unknown_extension(tmp_path):
    path = tmp_path / "t.xlsx"
    path.write_text("a\n1\n")
    message = _problem(path)
    assert "'.xlsx'" in message and ".csv" in message and ".parquet" in message


def test_empty_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("\n\n")
    assert "empty" in _problem(path)


def test_ragged_csv_names_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")
    assert f"{path}:3:" in _problem(path)


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    assert f"{path}:2:" in _problem(path)


def test_json_array_of_non_objects(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("[1, 2]")
    assert "item 1" in _problem(path)


def test_json_single_object_is_explained(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{\n  "a": [1, 2]\n}\n')
    assert "array of objects" in _problem(path)


def test_non_utf8_names_line_and_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n1,\xff\n")
    assert f"{path}:2:3: not valid UTF-8" in _problem(path)


def test_garbled_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all" * 10)
    assert "cannot read as parquet" in _problem(path)


def test_header_only_table_has_no_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n")
    assert "no data rows" in _problem(path)


def test_directory_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.mkdir()
    assert "directory" in _problem(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    assert "not a regular file" in _problem(path)


def test_oversized_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text("a\n" + "1\n" * 100)
    monkeypatch.setattr(table_module, "MAX_BYTES", 50)
    assert "over the limit of 50 bytes" in _problem(path)


# ----------------------------------------------------------------------------- writing


def test_failed_write_leaves_the_old_file_and_no_partial_file(tmp_path, monkeypatch):
    path = write_table(tmp_path / "t.parquet", [{"a": 1}])
    before = path.read_bytes()

    def crash(table, tmp):
        tmp.write_bytes(b"half a parquet file")
        raise RuntimeError("disk fell off")

    monkeypatch.setattr(table_module, "_write_parquet", crash)
    with pytest.raises(RuntimeError, match="disk fell off"):
        write_table(path, [{"a": 2}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_mixed_types_for_parquet_are_a_user_error_and_write_nothing(tmp_path):
    with pytest.raises(UserError, match="column 'a'.*write .jsonl or .csv"):
        write_table(tmp_path / "t.parquet", [{"a": 1}, {"a": [1, 2]}])
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_missing_folder_unknown_extension_and_repeated_columns(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        write_table(tmp_path / "nope" / "t.csv", [{"a": 1}])
    with pytest.raises(UserError, match="unknown table extension"):
        write_table(tmp_path / "t.txt", [{"a": 1}])
    with pytest.raises(UserError, match="columns repeat: 'a'"):
        write_table(tmp_path / "t.csv", [{"a": 1}], ["a", "a"])
    assert list(tmp_path.iterdir()) == []
