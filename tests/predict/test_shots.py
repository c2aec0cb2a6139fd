"""Few-shot never silently becomes zero-shot (or fewer-shot): a pool without usable examples
is refused by name, and every section gets ``method.shots`` examples, never its own row."""

from __future__ import annotations

import pytest

from llmscisci_cfg.predict.shots import Shot, choose, shortfall

LABEL = "builtin:quickstart/label_tiny"
LABELS = ("--set", "data.columns.label={easy: y_easy_gpt4, difficult: y_diff_gpt4}")
SHOTS = ("--set", "method.shots=2")


def _sample(tmp_path, name, rows, edit=None, drop=()):
    from llmscisci_cfg.data.table import read_table, write_table
    from llmscisci_cfg.resources import root

    source = read_table(root("assets") / "sample" / "reports.csv")
    chosen = [dict(r) for r in source.rows[:rows]]
    for row in chosen:
        row.update(edit or {})
    columns = [c for c in source.columns if c not in drop]
    return write_table(tmp_path / name, chosen, columns)


@pytest.mark.parametrize(
    ("pool", "needles"),
    [
        (
            {"drop": ("y_easy_gpt4",)},
            ["method.pool", "column 'y_easy_gpt4' (data.columns.label.easy) not found"],
        ),
        (
            {"edit": {"y_easy_gpt4": "[7, 7]", "y_diff_gpt4": "not a label"}},
            [
                "has no usable example for easy (column 'y_easy_gpt4'; 6 rows: 6 with an "
                "unreadable label)",
                "method.shots: 0 for zero-shot",
            ],
        ),  # fmt: skip
    ],
)
def test_a_pool_without_usable_examples_is_refused(cli, tmp_path, fake_server, pool, needles):
    pool_path = _sample(tmp_path, "pool.csv", 6, **pool)
    out = tmp_path / "labels.csv"
    result = cli(
        "predict", LABEL, "--output", out, "--limit", "2", *SHOTS, *LABELS,
        "--set", f"method.pool={pool_path}", *fake_server.sets(),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.output
    assert fake_server.asked == 0 and not out.exists()
    assert not list(tmp_path.glob("labels.csv*"))


def test_a_pool_of_the_row_itself_is_refused(cli, tmp_path, fake_server):
    """This table as the pool, one labelled row: that row would be shown no example at all."""
    data = _sample(tmp_path, "one.csv", 1)
    out = tmp_path / "labels.csv"
    result = cli(
        "predict", LABEL, "--output", out, *SHOTS, *LABELS,
        "--set", f"data.source.path={data}", *fake_server.sets(),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "method.shots 2: 2 section(s) would be shown fewer examples" in result.output
    assert "row 1 (easy, id '10.0000/llmscisci.sample.001')" in result.output
    assert "usable examples per aspect: easy 1, difficult 1" in result.output
    assert fake_server.asked == 0 and not out.exists()


def test_every_section_gets_k_examples_from_a_pool_of_k_plus_one(cli, tmp_path, fake_server):
    import json

    data = _sample(tmp_path, "three.csv", 3)
    out = tmp_path / "labels.jsonl"
    result = cli(
        "predict", LABEL, "--output", out, *SHOTS, *LABELS,
        "--set", f"data.source.path={data}", *fake_server.sets(),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for row in map(json.loads, out.read_text().splitlines()):
        for aspect in ("easy", "difficult"):
            shots = row[f"{aspect}_shots"]
            assert len(shots) == 2 and row["doi"] not in shots


def _shot(i: int, label) -> Shot:
    return Shot(f"d{i}", f"text {i}", label)


def test_stratified_fills_up_with_examples_that_name_no_category():
    """Labels with no category set (all absent) are shown too when the categories run out."""
    pool = [_shot(0, [1, 0, 0]), _shot(1, [0, 0, 0]), _shot(2, [0, 0, 0]), _shot(3, [0, 0, 0])]
    for doc in ("x", "d0", "d1"):
        chosen = choose(pool, 3, doc, "easy", 0, "stratified")
        assert len(chosen) == 3 and doc not in [s.id for s in chosen]
        assert len({s.id for s in chosen}) == 3
    assert [s.id for s in choose(pool, 1, "x", "easy", 0, "stratified")] == ["d0"]


def test_shortfall_counts_the_examples_a_section_misses():
    pool = [_shot(0, [1]), _shot(1, [1])]
    assert shortfall(pool, 2, "x") == 0
    assert shortfall(pool, 2, "d0") == 1
    assert shortfall(pool, 3, "d0") == 2 and shortfall([], 2, "x") == 2
