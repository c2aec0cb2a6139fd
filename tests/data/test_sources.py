"""Reading sources through `datasets`: formats, text fidelity, line numbers, hashes, user errors."""

from __future__ import annotations

import hashlib

import pytest

from llmscisci_cfg.data.sources import load_source, require_columns
from llmscisci_cfg.digest import content_sha256
from llmscisci_cfg.errors import UserError
from tests.data_helpers import make_job, reports, write_csv, write_jsonl


def _rows(source):
    return source.rows.to_list()


def test_csv_cells_stay_text(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('doi,easy,code\n001,"multi\nline",3\n002,,NA\n', encoding="utf-8")
    src = load_source(make_job(tmp_path, "r.csv"))
    assert src.format == "csv"
    assert _rows(src) == [
        {"doi": "001", "easy": "multi\nline", "code": "3"},
        {"doi": "002", "easy": "", "code": "NA"},
    ]
    assert src.lines == (2, 4)  # the second record starts after the embedded newline
    assert src.where(1) == f"{path}:4"


def test_csv_with_bom_and_blank_lines(tmp_path):
    (tmp_path / "r.csv").write_bytes(b"\xef\xbb\xbfdoi,easy\n\na,x\n\nb,y\n")
    src = load_source(make_job(tmp_path, "r.csv"))
    assert src.columns == ["doi", "easy"]
    assert [r["doi"] for r in _rows(src)] == ["a", "b"]
    assert src.lines == (3, 5)


def test_json_jsonl_parquet_disk_agree(tmp_path):
    rows = reports(3)
    write_jsonl(tmp_path / "r.jsonl", rows)
    (tmp_path / "r.json").write_text(__import__("json").dumps(rows), encoding="utf-8")
    from datasets import Dataset, DatasetDict

    Dataset.from_list(rows).to_parquet(str(tmp_path / "r.parquet"))
    DatasetDict({"a": Dataset.from_list(rows[:1]), "b": Dataset.from_list(rows[1:])}).save_to_disk(
        str(tmp_path / "saved")
    )
    for name, fmt in [
        ("r.jsonl", "json"),
        ("r.json", "json"),
        ("r.parquet", "parquet"),
        ("saved", "disk"),
    ]:
        src = load_source(make_job(tmp_path, name))
        assert src.format == fmt
        assert sorted(r["doi"] for r in _rows(src)) == [r["doi"] for r in rows], name
    assert load_source(make_job(tmp_path, "r.jsonl")).where(2) == f"{tmp_path / 'r.jsonl'}:3"
    assert (
        load_source(make_job(tmp_path, "r.parquet")).where(2) == f"{tmp_path / 'r.parquet'}: row 3"
    )


def test_explicit_format_overrides_extension(tmp_path):
    write_csv(tmp_path / "r.txt", reports(2))
    src = load_source(make_job(tmp_path, "r.txt", source={"path": "r.txt", "format": "csv"}))
    assert len(src.rows) == 2


def test_builtin_sample(tmp_path):
    src = load_source(make_job(tmp_path, "builtin:sample"))
    assert {"doi", "easy", "difficult", "y_easy_gpt4", "reason_for_difficulty"} <= set(src.columns)
    assert len(src.rows) >= 80


def test_sha256_tracks_content(tmp_path):
    write_csv(tmp_path / "r.csv", reports(2))
    first = make_job(tmp_path, "r.csv").data.sha256
    assert first == content_sha256(tmp_path / "r.csv") and len(first) == 64
    assert first == hashlib.sha256((tmp_path / "r.csv").read_bytes()).hexdigest()  # = sha256sum
    write_csv(tmp_path / "r.csv", reports(3))
    assert make_job(tmp_path, "r.csv").data.sha256 != first
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("1")
    h = content_sha256(tmp_path / "d")
    (tmp_path / "d" / "x").write_text("2")
    assert content_sha256(tmp_path / "d") != h


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("r.csv", b"", "r.csv: the file is empty"),
        ("r.csv", b"  \n\n", "r.csv: the file is empty"),
        ("r.csv", b"doi,easy\n", "r.csv: has no data rows"),
        ("r.csv", b"doi,easy\na,caf\xe9\n", "r.csv:2:6: not valid UTF-8 (byte 0xe9)"),
        ("r.jsonl", b'{"doi": "a"}\n{"doi": "\xff"}\n', "r.jsonl:2:10: not valid UTF-8"),
        ("r.csv", b"doi,easy\na,b,c\n", "r.csv:2: 3 fields, but the header has 2"),
        ("r.csv", b"doi,doi\na,b\n", "the header repeats column(s) 'doi'"),
        (  # Arrow cuts a name at NUL: it was a datasets CastError traceback
            "r.csv",
            b"doi,ea\x00sy\na,b\n",
            "r.csv:1: the header has a NUL character in column name(s) 'ea\\x00sy'",
        ),
        (
            "r.jsonl",
            b'{"doi": "a"}\n{"doi": "b", "e\\u0000": 1}\n',
            "r.jsonl:2: the object has a NUL character in column name(s) 'e\\x00'",
        ),
        ("r.jsonl", b'{"doi": "a"}\n\n{"doi":\n', "r.jsonl:3: not valid JSON (Expecting value"),
        ("r.jsonl", b'{"doi": "a"}\n["b"]\n', "r.jsonl:2: expected a JSON object, got list"),
        ("r.json", b'[{"doi": "a"}, {"doi": 1}', "r.json: cannot read as json"),
        ("r.parquet", b"not parquet", "r.parquet: cannot read as parquet"),
        ("r.xlsx", b"x", "cannot tell the format from the extension '.xlsx'"),
    ],
)
def test_source_errors(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError) as info:
        load_source(make_job(tmp_path, name))
    assert needle in str(info.value)


def test_missing_file_and_bad_dir(tmp_path):
    with pytest.raises(
        UserError, match=r"nope\.csv: no such file or directory \(data.source.path: nope.csv\)"
    ):
        load_source(make_job(tmp_path, "nope.csv"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError, match="not a dataset saved with save_to_disk"):
        load_source(make_job(tmp_path, "empty_dir"))
    with pytest.raises(UserError, match="no such built-in data; available: builtin:sample"):
        load_source(make_job(tmp_path, "builtin:nope"))


def test_missing_column_lists_existing(tmp_path):
    write_csv(tmp_path / "r.csv", reports(1))
    src = load_source(make_job(tmp_path, "r.csv"))
    with pytest.raises(UserError) as info:
        require_columns(src, {"data.columns.label.easy": "y_easy_gpt", "data.columns.id": "doi"})
    msg = str(info.value)
    assert (
        "column 'y_easy_gpt' (data.columns.label.easy) not found (did you mean 'y_easy_gpt4'?)"
        in msg
    )
    assert "columns: doi, title, easy, difficult" in msg
    assert str(tmp_path / "r.csv") in msg
