"""Where `predict` writes: never over its input, and nothing at all when nothing is usable
(the next stage never reads an empty output)."""

from __future__ import annotations

import pytest

LABEL = "builtin:quickstart/label_tiny"
RATIONALE = ("--set", "data.task=builtin:repro_rationale",
             "--set", "data.columns.label={easy: y_easy_gpt4, difficult: y_diff_gpt4}")  # fmt: skip


@pytest.fixture
def four_rows(tmp_path):
    from llmscisci_cfg.data.table import read_table, write_table
    from llmscisci_cfg.resources import root

    source = read_table(root("assets") / "sample" / "reports.csv")
    return write_table(tmp_path / "four.csv", source.rows[:4], source.columns)


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("four.csv", "the output"),
        ("four.csv.report.json", "its report four.csv.report.json"),
        ("four.csv.partial.jsonl", "its journal four.csv.partial.jsonl"),
    ],
)
def test_the_output_never_replaces_the_input(cli, tmp_path, four_rows, fake_server, name, what):
    """Also with --overwrite, and also when a file beside the output would be the input."""
    data = four_rows if name == "four.csv" else four_rows.rename(tmp_path / name)
    before = data.read_bytes()
    output = tmp_path / "four.csv"
    result = cli(
        "predict", LABEL, "--output", output, "--overwrite",
        "--set", f"data.source.path={data}", *fake_server.sets(),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"--output {output}: {what} would replace the input table" in result.output
    assert "(data.source.path)" in result.output and data.read_bytes() == before
    assert fake_server.asked == 0


def test_the_output_never_replaces_the_few_shot_pool(cli, tmp_path, four_rows, fake_server):
    before = four_rows.read_bytes()
    result = cli(
        "predict", LABEL, "--output", four_rows, "--overwrite", "--set", "method.shots=1",
        "--set", f"method.pool={four_rows}",
        "--set", "data.columns.label={easy: y_easy_gpt4, difficult: y_diff_gpt4}",
        *fake_server.sets(),
    )  # fmt: skip
    assert result.exit_code == 2 and "(method.pool)" in result.output, result.output
    assert four_rows.read_bytes() == before


def test_rationales_that_keep_nothing_write_nothing(cli, tmp_path, four_rows, fake_server):
    """Every trace disagrees with gold: exit 2 with the reasons, no empty traces file."""
    fake_server.reply("<think>because</think>\n<label>[1, 1, 0, 0, 0]</label>")
    out = tmp_path / "traces.jsonl"
    result = cli("predict", LABEL, "--output", out, *RATIONALE,
                 "--set", f"data.source.path={four_rows}", *fake_server.sets())  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "nothing usable, so nothing written: 0 of 8 sections gave a trace (" in result.output
    assert "the teacher's label differs from the gold one" in result.output
    assert "data.label_codec" in result.output and "traces.jsonl.partial.jsonl" in result.output
    assert not out.exists() and not (tmp_path / "traces.jsonl.report.json").exists()


def test_labels_that_are_all_invalid_write_nothing(cli, tmp_path, four_rows, fake_server):
    fake_server.reply("I cannot label this.")
    out = tmp_path / "labels.csv"
    result = cli("predict", LABEL, "--output", out, "--set", f"data.source.path={four_rows}",
                 *fake_server.sets())  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "0 of 8 sections gave an answer (8 invalid answer" in result.output
    assert not out.exists()


def test_unreadable_figures_of_a_process_count_for_nothing(tmp_path):
    from llmscisci_cfg.predict.report import stats

    out = tmp_path / "labels.csv"
    (tmp_path / "labels.csv.stats.rank0.json").write_text('{"seconds": 2.0, "completion_to')
    (tmp_path / "labels.csv.stats.rank1.json").write_text(
        '{"seconds": 4.0, "completion_tokens": 80}'
    )
    (tmp_path / "labels.csv.stats.rank2.json").write_text(
        '{"seconds": "x", "completion_tokens": [1]}'
    )
    assert stats(out) == {"seconds": 4.0, "tokens_per_second": 20.0}
