"""`method.rows: labelled`: predict only the rows with a gold label (a run to score pays for
no unlabelled row), from a label column or a `data.labels` join; refused without labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from llmscisci_cfg.data.table import read_table
from llmscisci_cfg.resources import root

LABEL = "builtin:quickstart/label_tiny"
FAST = ("--set", "generation.max_new_tokens=32", "--set", "method.max_prompt_tokens=128")
SAMPLE = root("assets") / "sample" / "reports.csv"


def _labels(path: Path, dois: list[str]) -> Path:
    """A labels table for ``dois`` (their sample gold), ids in another order than the table's."""
    gold = {r["doi"]: r for r in read_table(SAMPLE).rows}
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["paper", "g_easy", "g_diff"])
        for doi in reversed(dois):
            writer.writerow([doi, gold[doi]["y_easy_gpt4"], gold[doi]["y_diff_gpt4"]])
    return path


def _joined(labels: Path) -> tuple[str, ...]:
    return (
        "--set", f"data.labels.path={labels}", "--set", "data.labels.id=paper",
        "--set", "data.labels.columns.easy=g_easy", "--set", "data.labels.columns.difficult=g_diff",
    )  # fmt: skip


def test_only_the_joined_rows_are_predicted_in_table_order(cli, tmp_path):
    dois = [r["doi"] for r in read_table(SAMPLE).rows]
    chosen = [dois[7], dois[2], dois[40]]  # 7 has no easy label: labelled for one aspect
    labels = _labels(tmp_path / "gold.csv", chosen)
    out = tmp_path / "labelled.jsonl"
    result = cli(
        "predict", LABEL, *_joined(labels), "--set", "method.rows=labelled", *FAST,
        "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    total = len(dois)
    assert (
        f"method.rows: labelled: 3 rows with a gold label, {total - 3} without one left out"
        in result.output
    )
    rows = read_table(out).rows
    assert [r["doi"] for r in rows] == [dois[2], dois[7], dois[40]]  # the table's order
    sample = {r["doi"]: r for r in read_table(SAMPLE).rows}
    assert [r["g_diff"] for r in rows] == [sample[r["doi"]]["y_diff_gpt4"] for r in rows]
    assert all(r["difficult_raw"] for r in rows)  # predicted
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["rows"] == 3 and report["sections"] == 6
    assert report["row_selection"] == {"rows": "labelled", "unlabelled_left_out": total - 3}
    from llmscisci_cfg.digest import content_sha256

    assert report["labels"] == {"file": str(labels), "sha256": content_sha256(labels)}


def test_a_label_column_keeps_the_rows_labelled_for_any_aspect(cli, tmp_path):
    rows = read_table(SAMPLE).rows[:6]
    rows[1]["y_easy_gpt4"] = rows[1]["y_diff_gpt4"] = ""  # no aspect labelled: left out
    rows[4]["y_diff_gpt4"] = "   "  # one aspect labelled: kept
    table = tmp_path / "reports.csv"
    with open(table, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out.jsonl"
    result = cli(
        "predict", LABEL, "--set", f"data.source.path={table}",
        "--set", "data.columns.label.easy=y_easy_gpt4",
        "--set", "data.columns.label.difficult=y_diff_gpt4",
        "--set", "method.rows=labelled", *FAST, "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    kept = [r["doi"] for r in read_table(out).rows]
    assert kept == [rows[i]["doi"] for i in (0, 2, 3, 4, 5)]


def test_no_label_column_is_refused_when_the_recipe_loads(cli):
    result = cli("validate", LABEL, "--set", "method.rows=labelled")
    assert result.exit_code == 2
    assert "method.rows: rows: labelled predicts the rows with a gold label, but the recipe " in (
        result.output
    )


def test_no_labelled_row_is_a_user_error_naming_the_columns(cli, tmp_path):
    labels = tmp_path / "gold.csv"
    labels.write_text('paper,g_easy,g_diff\nnot-a-doi,"[1, 0, 0, 0, 0]","[0, 0, 0, 0, 1]"\n')
    result = cli(
        "predict", LABEL, *_joined(labels), "--set", "method.rows=labelled", *FAST,
        "--output", tmp_path / "none.jsonl",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "method.rows is labelled, but no row has a gold label in 'g_easy', 'g_diff'" in (
        result.output
    )
    assert not (tmp_path / "none.jsonl").exists()


def test_resume_refuses_when_the_labelled_rows_may_have_changed(cli, tmp_path):
    """Which rows are predicted depends on the labels table: a finished labelled run is not
    taken as complete after it changed, nor after method.rows changed (named, not guessed)."""
    dois = [r["doi"] for r in read_table(SAMPLE).rows]
    labels = _labels(tmp_path / "gold.csv", [dois[3]])
    out = tmp_path / "p.jsonl"
    args = ("predict", LABEL, *_joined(labels), *FAST, "--output", out)
    assert cli(*args, "--set", "method.rows=labelled").exit_code == 0
    _labels(labels, [dois[4]])  # another row coded, as many as before
    again = cli(*args, "--set", "method.rows=labelled", "--resume")
    assert again.exit_code == 2
    assert "was predicted with other settings (rows: ['labelled', " in again.output
    assert cli(*args, "--resume").exit_code == 2  # method.rows: all now
