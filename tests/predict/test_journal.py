"""The journal that makes `predict` resumable: what an interruption leaves is read back
without losing an entry, what it cannot leave is refused by name, and a resumed run keeps an
answer only while its row still asks the same (`Item.fingerprint`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import journal

LABEL = "builtin:quickstart/label_tiny"
SETTINGS = {"task": "t"}


def _entry(row: int, aspect: str = "easy") -> journal.Entry:
    return journal.Entry(row, aspect, f"doc{row}", "f" * 64, pred=[0, 1], raw="r", valid=True)


def test_a_torn_last_line_costs_only_its_own_entry(tmp_path):
    out = tmp_path / "labels.csv"
    path = journal.path_for(out, 0, 1)
    log = journal.Journal(path, SETTINGS)
    log.write([_entry(0)])
    log.close()
    with path.open("a", encoding="utf-8") as f:
        f.write('{"row": 1, "aspect": "easy", "id": "do')  # killed mid-write
    log = journal.Journal(path, SETTINGS)
    log.write([_entry(2), _entry(3)])
    log.close()
    assert sorted(journal.read(out)) == [(0, "easy"), (2, "easy"), (3, "easy")]
    assert journal.read(out)[(2, "easy")] == _entry(2)
    assert journal.read_settings(out) == [(path, SETTINGS)]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"row": "abc", "aspect": "easy", "id": "d"}', "'row' is 'abc', not a row number"),
        ('{"row": -1, "aspect": "easy", "id": "d"}', "'row' is -1"),
        ('{"row": true, "aspect": "easy", "id": "d"}', "'row' is True"),
        ('{"row": 1, "id": "d"}', "no 'aspect'"),
        ('{"row": 1, "aspect": "easy", "id": "d", "valid": "yes"}', "'valid' is 'yes'"),
        ('{"row": 1, "aspect": "easy", "id": "d", "confidence": 7}', "'confidence' is 7"),
        ('{"row": 1, "aspect": "easy", "id": "d", "shots": "a,b"}', "'shots' is 'a,b'"),
        ('{"row": 1, "aspect": "easy", "id": "d", "extra": 1}', "unknown key(s) extra"),
        ("[1, 2]", "a JSON list, not an object"),
    ],
)
def test_a_line_that_is_no_entry_is_named(tmp_path, line, why):
    out = tmp_path / "labels.csv"
    path = journal.path_for(out, 0, 1)
    path.write_text(json.dumps({"settings": SETTINGS}) + "\n" + line + "\n")
    with pytest.raises(UserError) as raised:
        journal.read(out)
    assert f"{path}:2: not a journal entry ({why}" in str(raised.value)


def _table(tmp_path: Path, rows: int = 4) -> tuple[Path, list[str], list[list[str]]]:
    from llmscisci_cfg.resources import root

    with open(root("assets") / "sample" / "reports.csv", newline="", encoding="utf-8") as f:
        header, *body = list(csv.reader(f))
    return tmp_path / "reports.csv", header, body[:rows]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_resume_refuses_rows_whose_text_changed_under_the_same_id(cli, tmp_path, fake_server):
    data, header, rows = _table(tmp_path)
    _write(data, header, rows)
    out = tmp_path / "labels.csv"
    args = ("predict", LABEL, "--output", out, "--set", f"data.source.path={data}",
            *fake_server.sets())  # fmt: skip
    assert cli(*args, "--limit", "2").exit_code == 0  # the journal stays for more rows
    asked = fake_server.asked
    assert cli(*args, "--limit", "3", "--resume").exit_code == 0  # unchanged: row 3 only
    assert fake_server.asked - asked == 2
    rows[1][header.index("difficult")] = "Entirely new text about missing hyperparameters."
    _write(data, header, rows)
    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 2, resumed.output
    assert "1 finished section(s) no longer ask what the interrupted run asked: row 2 " in (
        resumed.output
    )
    assert f"(difficult, id {rows[1][0]!r})" in resumed.output and "--overwrite" in resumed.output
    assert fake_server.asked - asked == 2  # nothing asked


def test_resume_refuses_a_journal_whose_settings_line_is_unreadable(cli, tmp_path, fake_server):
    data, header, rows = _table(tmp_path, 3)
    _write(data, header, rows)
    out = tmp_path / "labels.csv"
    args = ("predict", LABEL, "--output", out, "--set", f"data.source.path={data}",
            *fake_server.sets())  # fmt: skip
    assert cli(*args, "--limit", "1").exit_code == 0
    before = out.read_bytes()
    path = journal.path_for(out, 0, 1)
    first, *rest = path.read_text().splitlines(keepends=True)
    path.write_text(first[:40] + "\n" + "".join(rest))  # the settings line damaged
    other = ("--set", "generation.temperature=0.7")  # these answers would be mixed in
    resumed = cli(*args, "--resume", *other)
    assert resumed.exit_code == 2, resumed.output
    assert "its first line is not the settings its answers were generated with" in resumed.output
    assert out.read_bytes() == before


def test_resume_names_a_journal_line_that_is_no_entry(cli, tmp_path, fake_server):
    data, header, rows = _table(tmp_path, 3)
    _write(data, header, rows)
    out = tmp_path / "labels.csv"
    args = ("predict", LABEL, "--output", out, "--set", f"data.source.path={data}",
            *fake_server.sets())  # fmt: skip
    assert cli(*args, "--limit", "1").exit_code == 0
    path = journal.path_for(out, 0, 1)
    with path.open("a") as f:
        f.write('{"row": "abc"}\n')
    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 2 and "Traceback" not in resumed.output
    assert f"{path}:4: not a journal entry (no 'aspect')" in resumed.output


def test_resume_after_a_torn_line_asks_no_section_twice(cli, tmp_path, fake_server):
    data, header, rows = _table(tmp_path, 3)
    _write(data, header, rows)
    out = tmp_path / "labels.csv"
    args = ("predict", LABEL, "--output", out, "--set", f"data.source.path={data}",
            *fake_server.sets())  # fmt: skip
    assert cli(*args, "--limit", "1").exit_code == 0
    with journal.path_for(out, 0, 1).open("a") as f:
        f.write('{"row": 1, "aspect": "easy", "id": "10.00')  # an interrupted write
    assert cli(*args, "--limit", "2", "--resume").exit_code == 0  # row 2: asked once
    asked = fake_server.asked
    again = cli(*args, "--limit", "2", "--resume")
    assert again.exit_code == 0, again.output
    assert fake_server.asked == asked  # every answer of row 2 was read back
