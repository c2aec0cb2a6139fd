"""Example building: one per report per aspect, drops by reason, labels, document split, builders."""

from __future__ import annotations

import re

import pytest

from llmscisci_cfg.data.examples import build_rows, collect, load_traces
from llmscisci_cfg.data.sources import load_source
from llmscisci_cfg.data.splits import split_documents
from llmscisci_cfg.errors import UserError
from tests.data_helpers import (
    LABELS,
    build_dataset,
    make_job,
    report,
    reports,
    write_csv,
    write_jsonl,
)


def _collect(job):
    return collect(load_source(job), job), job.task


def test_one_example_per_report_per_aspect_and_empty_sections(tmp_path):
    rows = reports(3) + [report(7, easy="   \n ", difficult="Only the difficult part."), report(8)]
    rows[-1]["doi"] = "  "  # an empty id drops both aspects
    write_csv(tmp_path / "r.csv", rows)
    (examples, dropped), _ = _collect(make_job(tmp_path, "r.csv"))
    assert [(e.id, e.aspect) for e in examples[:2]] == [
        ("10.1/doc.000", "easy"),
        ("10.1/doc.000", "difficult"),
    ]
    assert len(examples) == 3 * 2 + 1
    assert dict(dropped) == {"empty_text": 1, "empty_id": 2}
    assert examples[-1].aspect == "difficult" and examples[-1].text == "Only the difficult part."
    assert all(e.gold is None for e in examples)  # no label columns declared


def test_a_repeated_id_is_refused_when_traces_join_on_it(tmp_path, capsys):
    """Two reports under one id would share one trace; without traces a repeat is a warning
    (copied rows), and DPO's several preference rows per report are usual."""
    rows = reports(4)
    rows[3]["doi"] = rows[1]["doi"]
    write_csv(tmp_path / "r.csv", rows)
    write_jsonl(tmp_path / "t.jsonl", [{"id": "10.1/doc.000", "aspect": "easy", "trace": "x"}])
    with pytest.raises(UserError) as info:
        _collect(make_job(tmp_path, "r.csv", "sft", traces={"path": "t.jsonl", "missing": "empty"}))
    where = re.escape(str(tmp_path / "r.csv"))
    found = re.search(
        rf"{where}:(\d+): id '10.1/doc.001' \(column 'doi'\) is also the id at {where}:(\d+)",
        str(info.value),
    )
    assert found and int(found[1]) > int(found[2]) > 1, info.value
    (examples, _), _ = _collect(make_job(tmp_path, "r.csv"))
    assert len(examples) == 8
    assert "1 row(s) repeat an earlier row's id" in capsys.readouterr().err


def test_labels_decoded_with_task_codes(tmp_path):
    rows = [report(0, "a", "b"), report(1, "c", "d")]
    rows[0]["reason_for_difficulty"], rows[1]["reason_for_difficulty"] = "1, 3", "5"
    rows[0]["reason_for_easiness"], rows[1]["reason_for_easiness"] = "2", "1;4"
    write_csv(tmp_path / "r.csv", rows)
    labels = {"easy": "reason_for_easiness", "difficult": "reason_for_difficulty"}
    (examples, _), _ = _collect(
        make_job(tmp_path, "r.csv", columns={"label": labels}, label_codec="codes")
    )
    assert [e.gold for e in examples] == [
        [0, 1, 0, 0, 0],
        [1, 0, 1, 0, 0],
        [1, 0, 0, 1, 0],
        [0, 0, 0, 0, 1],
    ]
    alt = {
        "1": "Unclear notation or documentation in the codebase",
        "2": "Missing Algorithm step or Architecture details",
        "3": "Insufficient Math/Equations",
        "4": "Missing nuance details",
        "5": "Cannot extract concrete factors that made it difficult",
    }
    recipe = make_job(
        tmp_path, "r.csv", columns={"label": labels}, task_overrides={"codes": {"difficult": alt}}
    )
    (examples, _), _ = _collect(recipe)
    assert examples[1].gold == [0, 0, 1, 1, 0]  # codes 1, 3: unclear notation, insufficient math


def test_bad_label_error_names_row_and_column(tmp_path):
    rows = reports(3)
    rows[2]["y_diff_gpt4"] = "[1, 0, 1]"
    write_csv(tmp_path / "r.csv", rows, ["doi", "easy", "difficult", "y_easy_gpt4", "y_diff_gpt4"])
    with pytest.raises(UserError) as info:
        _collect(make_job(tmp_path, "r.csv", columns={"label": LABELS}))
    msg = str(info.value)
    assert (
        f"{tmp_path / 'r.csv'}:4: id '10.1/doc.002': column 'y_diff_gpt4' (data.columns.label.difficult)"
        in msg
    )
    assert "one-hot list of 5" in msg and "data.on_bad_label: drop" in msg


def test_bad_labels_dropped_and_counted_empty_ones_as_no_label(tmp_path):
    rows = reports(4)
    rows[0]["y_easy_gpt4"] = "[1, 0, 1, 0, 2]"
    rows[1]["y_diff_gpt4"] = ""
    write_csv(tmp_path / "r.csv", rows)
    recipe = make_job(tmp_path, "r.csv", columns={"label": LABELS}, on_bad_label="drop")
    (examples, dropped), _ = _collect(recipe)
    assert dict(dropped) == {"bad_label": 1, "no_label": 1} and len(examples) == 6


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (  # checked when the recipe loads (checks.py), before any data is read
            {"aspects": ["eassy"]},
            "data.aspects: unknown aspect 'eassy'; the task builtin:repro_effort has easy, difficult",
        ),
        (
            {"columns": {"label": {"easy": "y_easy_gpt4"}}},
            "data.columns.label: no column for aspect(s) difficult",
        ),
        (
            {"columns": {"text": {"hard": "difficult"}}},
            "data.columns.text: unknown aspect 'hard'",
        ),
    ],
)
def test_column_map_errors(tmp_path, data, needle):
    write_csv(tmp_path / "r.csv", reports(1))
    with pytest.raises(UserError) as info:
        _collect(make_job(tmp_path, "r.csv", **data))
    assert needle in str(info.value)


def test_partial_label_map_is_fine_when_aspects_restricted(tmp_path):
    write_csv(tmp_path / "r.csv", reports(2))
    recipe = make_job(
        tmp_path, "r.csv", aspects=["easy"], columns={"label": {"easy": "y_easy_gpt4"}}
    )
    (examples, _), _ = _collect(recipe)
    assert [e.aspect for e in examples] == ["easy", "easy"] and examples[0].gold == [1, 0, 0, 0, 0]


# ----------------------------------------------------------------------------- split


def test_split_by_document_no_overlap_and_deterministic():
    ids = [f"d{i}" for i in range(50) for _ in range(2)]  # two aspects per document
    test = split_documents(ids, 0.2, seed=3)
    assert len(test) == 10 and test <= set(ids)
    assert split_documents(list(reversed(ids)), 0.2, seed=3) == test  # row order does not matter
    assert split_documents(ids, 0.2, seed=4) != test
    assert len(split_documents(ids, 0.5, seed=3)) == 25


@pytest.mark.parametrize(
    ("n", "fraction", "n_test"), [(1, 0.2, 0), (2, 0.01, 1), (2, 0.99, 1), (10, 0.25, 2)]
)
def test_split_sizes(n, fraction, n_test):
    assert len(split_documents([str(i) for i in range(n)], fraction, seed=0)) == n_test


def test_split_seed_defaults_to_train_seed(tmp_path):
    write_csv(tmp_path / "r.csv", reports(1))
    assert make_job(tmp_path, "r.csv", overrides=("train.seed=7",)).split_seed == 7
    assert make_job(tmp_path, "r.csv", split={"seed": 9}).split_seed == 9


# ----------------------------------------------------------------------------- builders


def _rows(job):
    from llmscisci_cfg.train import methods

    (examples, _), _ = _collect(job)
    return build_rows(methods.get(job.method), job, examples)


def test_grpo_rows(tmp_path):
    write_csv(tmp_path / "r.csv", reports(2))
    rows, dropped = _rows(make_job(tmp_path, "r.csv", columns={"label": LABELS}))
    assert not dropped and len(rows) == 4
    row = rows[1]
    assert set(row) == {"id", "aspect", "prompt", "gold", "text"}  # text: in memory only
    assert (
        row["text"] == "Hard part 0."
        and row["id"] == "10.1/doc.000"
        and row["aspect"] == "difficult"
        and row["gold"] == [0, 0, 0, 0, 1]
    )
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert "<text>\nHard part 0.\n</text>" in row["prompt"][1]["content"]


def test_sft_rows_with_traces(tmp_path):
    write_csv(tmp_path / "r.csv", reports(2))
    write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"id": "10.1/doc.000", "aspect": "easy", "trace": "Code is public."},
            {"id": "10.1/doc.001", "aspect": "difficult", "trace": "Math missing."},
        ],
    )
    recipe = make_job(tmp_path, "r.csv", method="sft", traces={"path": "t.jsonl"})
    rows, dropped = _rows(recipe)
    assert dict(dropped) == {"no_trace": 2} and len(rows) == 2
    assert rows[0]["completion"] == [
        {
            "role": "assistant",
            "content": "<think>\nCode is public.\n</think>\n<label>\n[1, 0, 0, 0, 0]\n</label>",
        }
    ]
    recipe = make_job(
        tmp_path, "r.csv", method="sft", traces={"path": "t.jsonl", "missing": "empty"}
    )
    rows, dropped = _rows(recipe)
    assert not dropped and len(rows) == 4
    assert (
        rows[1]["completion"][0]["content"]
        == "<think>\n\n</think>\n<label>\n[0, 0, 0, 0, 1]\n</label>"
    )


def test_sft_without_trace_file_has_empty_think(tmp_path):
    write_csv(tmp_path / "r.csv", reports(1))
    rows, dropped = _rows(make_job(tmp_path, "r.csv", method="sft"))
    assert not dropped and rows[0]["completion"][0]["content"].startswith(
        "<think>\n\n</think>\n<label>"
    )


def test_dpo_rows_drop_identical_and_empty(tmp_path):
    rows = reports(3)
    rows[0]["easy_llama3_response"] = rows[0]["easy_gpt_response"]
    rows[1]["difficult_gpt_response"] = " "
    write_csv(tmp_path / "r.csv", rows)
    out, dropped = _rows(make_job(tmp_path, "r.csv", method="dpo"))
    assert dict(dropped) == {"identical_pair": 1, "empty_answer": 1} and len(out) == 4
    assert out[0]["chosen"][0]["role"] == "assistant" and "gpt" in out[0]["chosen"][0]["content"]
    assert "llama" in out[0]["rejected"][0]["content"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (
            b'{"id": "a", "aspect": "easy"}\n',
            "t.jsonl:1: key 'trace' not found (data.traces); keys: id, aspect",
        ),
        (b'{"id": "a", "aspect": "easy", "trace": "x"}\n{oops\n', "t.jsonl:2: not valid JSON"),
        (b"[1]\n", "t.jsonl:1: expected a JSON object, got list"),
        (b"", "t.jsonl: the file is empty"),
        (b'{"id": "a", "aspect": "easy", "trace": "\xff"}\n', "t.jsonl:1:41: not valid UTF-8"),
        (
            b'{"id": "a", "aspect": "easy", "trace": "x"}\n{"id": "a", "aspect": "easy", "trace": "y"}\n',
            "t.jsonl:2: a second trace for id 'a' aspect 'easy' (first at line 1)",
        ),
    ],
)
def test_trace_errors(tmp_path, content, needle):
    write_csv(tmp_path / "r.csv", reports(1))
    (tmp_path / "t.jsonl").write_bytes(content)
    with pytest.raises(UserError) as info:
        load_traces(make_job(tmp_path, "r.csv", method="sft", traces={"path": "t.jsonl"}))
    assert needle in str(info.value)


def test_builtin_sample_traces_cover_sample(tmp_path):
    recipe = make_job(
        tmp_path, "builtin:sample", method="sft", traces={"path": "builtin:sample_traces"}
    )
    rows, dropped = _rows(recipe)
    assert len(rows) >= 160 and dropped.get("no_trace", 0) <= len(rows) // 10
    assert all("</label>" in r["completion"][0]["content"] for r in rows)


def test_dpo_pairs_from_answer_columns(tmp_path):
    """data.pairs: the answer closest to gold is chosen, the farthest rejected; ties and
    identical answers are dropped and counted."""
    from llmscisci_cfg.train.methods.dpo import choose_pair
    from tests.data_helpers import build_dataset

    rows = reports(6)
    rows[0]["easy_llama3_response"] = rows[0]["easy_gpt_response"]  # identical: dropped
    rows[1]["y_easy_gpt4"] = "[0, 0, 0, 0, 1]"  # llama's answer is now the right one
    write_csv(tmp_path / "r.csv", rows)
    pairs = {
        "answers": {
            "easy": ["easy_gpt_response", "easy_llama3_response"],
            "difficult": ["difficult_gpt_response", "difficult_llama3_response"],
        }
    }
    columns = {"label": LABELS, "chosen": None, "rejected": None}
    job = make_job(
        tmp_path, "r.csv", method="dpo", columns=columns, pairs=pairs, length_filter=None
    )
    dataset, report = build_dataset(job)
    assert report.dropped == {"tied_answers": 1}  # rows[0] easy: both answers score the same
    built = dataset["train"].to_list() + dataset["test"].to_list()
    for row in built:
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
    flipped = next(r for r in built if r["id"] == rows[1]["doi"] and r["aspect"] == "easy")
    assert "llama" in flipped["chosen"][0]["content"]
    from llmscisci_cfg.task.kinds import MultiLabel

    assert choose_pair(("", "x"), [1, 0], MultiLabel.plain(2), "hamming_to_gold") == "empty_answer"


def test_pairs_and_chosen_columns_are_exclusive(tmp_path):
    write_csv(tmp_path / "r.csv", reports(2))
    pairs = {"answers": {"easy": ["easy_gpt_response", "easy_llama3_response"]}}
    with pytest.raises(UserError, match="either data.pairs or data.columns.chosen"):
        make_job(tmp_path, "r.csv", method="dpo", columns={"label": LABELS}, pairs=pairs)


@pytest.mark.parametrize("on_bad_label", ["error", "drop"])
def test_an_empty_label_cell_is_no_label_counted_never_an_error(tmp_path, on_bad_label):
    """A blank cell is how a table leaves a row uncoded (and how a CSV writes null): the
    example is left out as ``no_label``, as a labels table without the id leaves it, for every
    answer kind; it is never read as a coding, nor a bad label."""
    rows = reports(8)
    rows[2]["y_easy_gpt4"] = ""
    rows[5]["y_easy_gpt4"] = "   "
    rows[6]["y_easy_gpt4"] = "[9]"  # unreadable: a bad label, as before
    write_csv(tmp_path / "r.csv", rows)
    job = make_job(tmp_path, "r.csv", "sft", on_bad_label=on_bad_label, length_filter=None)
    if on_bad_label == "error":
        with pytest.raises(UserError, match=r"id '10\.1/doc\.006': .* got '\[9\]'"):
            build_dataset(job)
        rows[6]["y_easy_gpt4"] = "[0, 1, 0, 0, 0]"
        write_csv(tmp_path / "r.csv", rows)
        job = make_job(tmp_path, "r.csv", "sft", on_bad_label=on_bad_label, length_filter=None)
    dataset, rep = build_dataset(job)
    expected = {"no_label": 2} | ({"bad_label": 1} if on_bad_label == "drop" else {})
    assert rep.dropped == expected
    built = {(r["id"], r["aspect"]) for s in dataset for r in dataset[s].to_list()}
    assert (rows[2]["doi"], "easy") not in built and (rows[2]["doi"], "difficult") in built
