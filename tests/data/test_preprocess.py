"""`build_dataset` and `llmscisci preprocess`: the column contract, the cache, the CLI and its errors."""

from __future__ import annotations

import json
import re

import pytest

from tests.data_helpers import (
    LABELS,
    build_dataset,
    make_job,
    report,
    reports,
    write_csv,
    write_jsonl,
)

NO_FILTER = {"length_filter": None}


def _total(report_) -> int:
    return report_.examples + sum(report_.dropped.values())


@pytest.mark.parametrize(
    ("method", "extra"),
    [("grpo", set()), ("sft", {"completion"}), ("dpo", {"chosen", "rejected"})],
)
def test_column_contract(tmp_path, method, extra):
    write_csv(tmp_path / "r.csv", reports(10))
    data = {"columns": {"label": LABELS}} if method != "sft" else {}
    ds, rep = build_dataset(make_job(tmp_path, "r.csv", method=method, **data, **NO_FILTER))
    assert list(ds) == ["train", "test"]
    assert set(ds["train"].column_names) == {"id", "aspect", "prompt", "gold"} | extra
    row = ds["train"][0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["gold"] in ([1, 0, 0, 0, 0], [0, 0, 0, 0, 1])
    for name in extra:
        assert [m["role"] for m in row[name]] == ["assistant"]
    assert rep.rows == 10 and rep.examples == 20 and rep.dropped == {}
    assert rep.splits == {"train": 16, "test": 4} and rep.documents == {"train": 8, "test": 2}
    assert rep.group_overlap == 0
    test_ids = set(ds["test"]["id"])
    assert not test_ids & set(ds["train"]["id"])
    assert all(ds["test"]["id"].count(i) == 2 for i in test_ids)  # both aspects stay together


def test_report_accounts_for_every_section(tmp_path):
    rows = reports(8) + [
        report(20, easy="", difficult="only hard"),
        report(21, easy=" ", difficult=" "),
    ]
    rows[0]["y_easy_gpt4"] = "garbage"
    write_csv(tmp_path / "r.csv", rows)
    recipe = make_job(
        tmp_path, "r.csv", columns={"label": LABELS}, on_bad_label="drop", **NO_FILTER
    )
    _, rep = build_dataset(recipe)
    assert rep.dropped == {"bad_label": 1, "empty_text": 3}
    assert _total(rep) == rep.rows * 2 == 20 and rep.examples == 16


def test_unlabelled_source_gives_gold_none(tmp_path):
    rows = [{"doi": r["doi"], "easy": r["easy"], "difficult": r["difficult"]} for r in reports(6)]
    write_csv(tmp_path / "r.csv", rows)
    ds, rep = build_dataset(make_job(tmp_path, "r.csv", **NO_FILTER))
    assert rep.examples == 12 and set(ds["train"]["gold"]) == {None}


def test_length_filter_counts_and_limits(tmp_path):
    write_csv(tmp_path / "r.csv", reports(40))
    recipe = make_job(tmp_path, "r.csv", length_filter={"percentile": 50})
    ds, rep = build_dataset(recipe)
    assert rep.dropped["prompt_too_long"] > 0
    assert set(rep.length_limits) == {"prompt", "total"} and rep.length_limits["total"] is None
    assert _total(rep) == 80
    # prompts grow with the document index, so roughly half of train is over the median
    assert 30 <= rep.dropped["prompt_too_long"] <= 50
    recipe = make_job(
        tmp_path, "r.csv", length_filter={"percentile": None, "max_prompt_tokens": 100000}
    )
    assert "prompt_too_long" not in build_dataset(recipe)[1].dropped


def test_cache_hit_on_second_run_and_invalidation(tmp_path):
    write_csv(tmp_path / "r.csv", reports(6))
    recipe = make_job(tmp_path, "r.csv")
    ds1, first = build_dataset(recipe)
    assert not first.cache_hit and (tmp_path / "cache" / "datasets").is_dir()
    ds2, second = build_dataset(recipe)
    assert second.cache_hit and second.cache_key == first.cache_key
    assert second.summary() == first.summary()
    assert ds2["train"].to_list() == ds1["train"].to_list()
    # content, data section, seed and template each change the key
    changed = [
        make_job(tmp_path, "r.csv", split={"test_fraction": 0.5}),
        make_job(tmp_path, "r.csv", overrides=("train.seed=1",)),
        make_job(tmp_path, "r.csv", overrides=("template.name=chatml",)),
    ]
    keys = {build_dataset(r)[1].cache_key for r in changed}
    assert len(keys) == 3 and first.cache_key not in keys
    write_csv(tmp_path / "r.csv", reports(7))  # a job hashes its data once: the next run sees this
    third = build_dataset(make_job(tmp_path, "r.csv"))[1]
    assert not third.cache_hit and third.rows == 7


def test_cached_report_for_plan_needs_no_tokenizer(tmp_path):
    from llmscisci_cfg.data.preprocess import cached_report

    write_csv(tmp_path / "r.csv", reports(6))
    recipe = make_job(tmp_path, "r.csv")
    assert cached_report(recipe) is None
    _, built = build_dataset(recipe)
    found = cached_report(recipe)
    assert found is not None and found.summary() == built.summary()
    assert found.cache_key == built.cache_key
    write_csv(tmp_path / "r.csv", reports(7))  # new content: the old build no longer answers
    assert cached_report(make_job(tmp_path, "r.csv")) is None


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    write_csv(tmp_path / "r.csv", reports(3))
    monkeypatch.setenv("LLMSCISCI_CACHE", str(tmp_path / "envcache"))
    recipe = make_job(tmp_path, "r.csv", cache_dir=None)
    _, rep = build_dataset(recipe)
    assert rep.cache_path.startswith(str(tmp_path / "envcache" / "datasets"))


def test_empty_split_keeps_its_columns(tmp_path):
    write_csv(tmp_path / "r.csv", reports(1))  # one document: everything goes to train
    for method, extra in (("grpo", []), ("sft", ["completion"]), ("dpo", ["chosen", "rejected"])):
        recipe = make_job(tmp_path, "r.csv", method=method, **NO_FILTER)
        ds, rep = build_dataset(recipe)
        assert rep.splits == {"train": 2, "test": 0} and rep.group_overlap == 0
        assert ds["test"].column_names == ["id", "aspect", "prompt", "gold", *extra]
        cached, again = build_dataset(recipe)
        assert again.cache_hit and len(cached["test"]) == 0


def test_sample_dataset_builds_for_every_method(tmp_path):
    for method in ("grpo", "sft", "dpo"):
        data = {"traces": {"path": "builtin:sample_traces"}} if method == "sft" else {}
        ds, rep = build_dataset(make_job(tmp_path, "builtin:sample", method=method, **data))
        assert rep.rows >= 80 and rep.group_overlap == 0 and rep.splits["test"] > 0
        assert _total(rep) == rep.rows * 2


# ----------------------------------------------------------------------------- CLI


def _recipe_file(tmp_path, **data):
    make_job(tmp_path, "r.csv", **data)
    return tmp_path / "recipe.yaml"


def test_cli_json_summary(cli, tmp_path):
    write_csv(tmp_path / "r.csv", reports(10) + [report(50, easy="", difficult="x")])
    result = cli("preprocess", _recipe_file(tmp_path, **NO_FILTER), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary == {
        "rows": 11,
        "examples": 21,
        "dropped": {"empty_text": 1},
        "splits": {"train": summary["splits"]["train"], "test": summary["splits"]["test"]},
        "group_overlap": 0,
        "test_set_sha256": summary["test_set_sha256"],
        "test_prompts_sha256": summary["test_prompts_sha256"],
        "split_by": "id",
        "per_split": summary["per_split"],
        "token_lengths": {
            "prompt": summary["token_lengths"]["prompt"],
            "total": None,
            "prompt_any": summary["token_lengths"]["prompt_any"],
        },
    }
    assert sum(summary["splits"].values()) == 21
    lengths = summary["token_lengths"]  # GRPO recipe: prompts only
    assert 0 < lengths["prompt"] <= lengths["prompt_any"]  # the test split's prompts too
    assert re.fullmatch("[0-9a-f]{64}", summary["test_set_sha256"])
    per = summary["per_split"]
    assert list(per) == ["train", "test"]
    assert {n: (e["rows"], e["documents"], e["examples"]) for n, e in per.items()} == {
        "train": (9, 9, 17),
        "test": (2, 2, 4),
    }  # the empty 'easy' section of row 50 is a train drop
    assert per["train"]["dropped"] == {"empty_text": 1} and per["test"]["dropped"] == {}
    assert per["test"]["sha256"] == summary["test_set_sha256"]
    assert per["test"]["prompts_sha256"] == summary["test_prompts_sha256"]
    assert per["train"]["truncated"] == per["test"]["truncated"] == 0


def test_cli_text_and_cache_and_preview(cli, tmp_path):
    write_csv(tmp_path / "r.csv", reports(10))
    path = _recipe_file(tmp_path, method="sft")
    first = cli("preprocess", path, "--set", "method.name=sft")
    assert first.exit_code == 0, first.output
    assert (
        "rows read:     10" in first.output
        and "examples:" in first.output
        and "cache:         written" in first.output
    )
    second = cli("preprocess", path, "--preview", "1")
    assert second.exit_code == 0, second.output
    assert "cache:         hit" in second.output
    assert "[loss mask:" in second.output
    # only the assistant answer and its end-of-turn token are inside the trained brackets
    assert "[[<think>" in second.output and "</label><|im_end|>]]" in second.output
    assert "[[<|im_start|>system" not in second.output


def test_cli_mlrc_like_recipe_without_labels(cli, tmp_path):
    rows = [{"doi": r["doi"], "easy": r["easy"], "difficult": r["difficult"]} for r in reports(5)]
    write_csv(tmp_path / "r.csv", rows)
    path = _recipe_file(tmp_path, columns={"label": LABELS}, **NO_FILTER)
    result = cli("preprocess", path, "--set", "data.columns.label=null", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["examples"] == 10


@pytest.mark.parametrize(
    ("setup", "args", "needles"),
    [
        ("missing", (), ["r.csv: no such file or directory"]),
        ("empty", (), ["r.csv: the file is empty"]),
        ("latin1", (), ["r.csv:2:", "not valid UTF-8"]),
        (
            "ok",
            ("--set", "data.columns.id=id"),
            ["column 'id' (data.columns.id) not found", "columns: doi, title"],
        ),
        (
            "ok",
            ("--set", "data.columns.label={easy: y_easy_gpt4, difficult: y_diff}"),
            [
                "column 'y_diff' (data.columns.label.difficult) not found (did you mean 'y_diff_gpt4'?)"
            ],
        ),
        (
            "badlabel",
            ("--set", "data.columns.label={easy: y_easy_gpt4, difficult: y_diff_gpt4}"),
            ["r.csv:3: id '10.1/doc.001': column 'y_easy_gpt4'", "data.on_bad_label: drop"],
        ),
        (
            "ok",
            (
                "--set",
                "method.name=sft",
                "--set",
                "rewards=null",
                "--set",
                "data.traces.path=nope.jsonl",
                "--set",
                "data.columns.label={easy: y_easy_gpt4, difficult: y_diff_gpt4}",
            ),
            ["nope.jsonl: no such file or directory (data.traces.path: ", "/nope.jsonl)"],
        ),
        ("ok", ("--set", "data.task=missing_task.yaml"), ["missing_task.yaml: no such file"]),
        (
            "ok",
            ("--set", "data.task_overrides.user_prompt='{{ txt }}'"),
            ["data.task_overrides.user_prompt: 'txt' is undefined"],
        ),
        (  # passes the load-time trial render, fails on a real (shorter) section
            "ok",
            ("--set", "data.task_overrides.user_prompt='{{ text[40] }}'"),
            ["r.csv:2: id '10.1/doc.000': task 'repro_effort', aspect 'easy': user_prompt: "],
        ),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(cli, tmp_path, setup, args, needles):
    fields = ["doi", "title", "easy", "difficult", "y_easy_gpt4", "y_diff_gpt4"]
    rows = reports(3)
    if setup == "badlabel":
        rows[1]["y_easy_gpt4"] = "[1, 0]"
    if setup in ("ok", "badlabel"):
        write_csv(tmp_path / "r.csv", rows, fields)
    elif setup == "empty":
        (tmp_path / "r.csv").write_bytes(b"")
    elif setup == "latin1":
        (tmp_path / "r.csv").write_bytes("doi,easy,difficult\na,café,x\n".encode("latin-1"))
    path = _recipe_file(tmp_path)
    result = cli("preprocess", path, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output


def test_trace_rows_use_traces_file(cli, tmp_path):
    write_csv(tmp_path / "r.csv", reports(4))
    write_jsonl(
        tmp_path / "t.jsonl",
        [{"id": f"10.1/doc.{i:03d}", "aspect": "easy", "trace": f"T{i}"} for i in range(4)],
    )
    path = _recipe_file(tmp_path, method="sft", traces={"path": "t.jsonl"}, **NO_FILTER)
    result = cli("preprocess", path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    # missing: drop applies to training examples only; the held-out document keeps both aspects
    assert summary["splits"] == {"train": 3, "test": 2}
    assert summary["examples"] == 5 and summary["dropped"] == {"no_trace": 3}
    assert summary["traces"] == {"with_trace": 4, "without_trace": 1}


# ----------------------------------------------------------------------------- real MLRC data


def test_mlrc_csv_without_labels(tmp_path, mlrc_csv):
    recipe = make_job(tmp_path, str(mlrc_csv), **NO_FILTER)
    ds, rep = build_dataset(recipe)
    assert rep.rows == 70
    assert rep.dropped == {"empty_text": 26}  # 13 reports have both sections empty
    assert rep.examples == 114 and sum(rep.documents.values()) == 57  # 57 reports with text
    assert rep.group_overlap == 0
    assert set(ds["train"]["gold"]) == {None}
    longest = max(len(p[1]["content"]) for split in ds.values() for p in split["prompt"])
    assert longest > 20_000  # run-on sections reach the prompt intact


def test_mlrc_csv_length_filter_and_cli(cli, tmp_path, mlrc_csv):
    path = _recipe_file(tmp_path)
    result = cli("preprocess", path, "--set", f"data.source.path={mlrc_csv}", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 70 and summary["group_overlap"] == 0
    assert summary["dropped"]["empty_text"] == 26
    # the 95th percentile of train prompts drops the run-on sections, counted
    assert 1 <= summary["dropped"]["prompt_too_long"] <= 12
    assert summary["examples"] + sum(summary["dropped"].values()) == 140
    text = cli("preprocess", path, "--set", f"data.source.path={mlrc_csv}")
    assert "26 empty_text" in text.output and "cache:         hit" in text.output


def test_preprocess_help(cli):
    result = cli("preprocess", "--help")
    assert result.exit_code == 0
    for option in ("--set", "--preview", "--json"):
        assert option in result.output


def test_a_huge_header_is_not_echoed_whole(cli, tmp_path):
    """Errors about a file's columns show its header cut, not whatever the file holds."""
    (tmp_path / "wide.csv").write_text("doi," + "SECRET" * 2000 + ",easy\n1,x,y\n")
    result = cli(
        "preprocess",
        "builtin:quickstart/sft_tiny",
        "--set",
        f"data.source.path={tmp_path / 'wide.csv'}",
    )
    assert result.exit_code == 2 and "not found; columns: doi, SECRET" in result.output
    assert result.output.count("SECRET") < 40 and len(result.output) < 2000
