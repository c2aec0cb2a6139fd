"""`llmscisci predict`: every row kept, every non-empty section answered validly (structured
output), the modes (label, few-shot, extract, judge, rationale), resume, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmscisci_cfg.task.labels import parse_onehot
from tests.conftest import RECIPES

LABEL = "builtin:quickstart/label_tiny"
FAST = ("--set", "generation.max_new_tokens=40", "--set", "method.max_prompt_tokens=256")


def rows_of(path: Path) -> list[dict]:
    from llmscisci_cfg.data.table import read_table

    return read_table(path).rows


def report_of(path: Path) -> dict:
    return json.loads(Path(f"{path}.report.json").read_text())


def test_zero_shot_labels_keep_every_row_and_column(cli, tmp_path):
    from llmscisci_cfg.data.table import read_table
    from llmscisci_cfg.resources import root

    out = tmp_path / "labels.csv"
    result = cli("predict", LABEL, "--output", out, "--limit", "12", *FAST)
    assert result.exit_code == 0, result.output
    source = read_table(root("assets") / "sample" / "reports.csv")
    table = read_table(out)
    assert table.columns[: len(source.columns)] == source.columns
    for aspect in ("easy", "difficult"):
        for suffix in ("pred", "raw", "reason", "truncated"):
            assert f"{aspect}_{suffix}" in table.columns
    assert [r["doi"] for r in table.rows] == [r["doi"] for r in source.rows[:12]]
    for row, original in zip(table.rows, source.rows, strict=False):
        assert {k: row[k] for k in source.columns} == original  # input cells untouched
        for aspect in ("easy", "difficult"):
            if original[aspect].strip():
                assert parse_onehot(row[f"{aspect}_pred"], 5) is not None, row[f"{aspect}_raw"]
                assert row[f"{aspect}_reason"] == ""
            else:
                assert row[f"{aspect}_pred"] == "" and row[f"{aspect}_reason"] == "empty_text"
    report = report_of(out)
    assert report["rows"] == 12 and report["valid_rate"] == 1.0
    assert report["predicted"] + sum(report["skipped"].values()) == 24
    assert report["backend"] == "transformers" and report["model"] == "builtin:tiny"
    assert report["model_seed"] == 42  # label_tiny sets no train.seed: its default
    assert len(report["prompt_template_sha256"]) == 64 and report["tokens"]["completion"] > 0
    # --limit left rows out: the journal stays for a later --resume (no section is paid twice)
    assert [p.name for p in tmp_path.glob("*.partial*")] == ["labels.csv.partial.jsonl"]
    assert "the journal stays beside labels.csv for a later --resume" in result.output


def test_output_formats_and_refusals(cli, tmp_path, fake_server):
    served = (*FAST, *fake_server.sets())
    out = tmp_path / "labels.jsonl"
    assert cli("predict", LABEL, "--output", out, "--limit", "2", *served).exit_code == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert isinstance(first["easy_pred"], list)  # JSON keeps the list
    again = cli("predict", LABEL, "--output", out, "--limit", "2", *served)
    assert again.exit_code == 2 and "(interrupted, or with --limit)" in again.output
    assert "pass --resume" in again.output and "--overwrite" in again.output
    bad = cli("predict", LABEL, "--output", tmp_path / "labels.txt", *served)
    assert bad.exit_code == 2 and ".txt" in bad.output
    parquet = tmp_path / "labels.parquet"
    assert cli("predict", LABEL, "--output", parquet, "--limit", "2", *served).exit_code == 0


def test_resume_does_not_ask_again(cli, tmp_path, monkeypatch):
    """An interrupted prediction continues from its journal; finished sections are not regenerated."""
    from llmscisci_cfg.models import generate
    from llmscisci_cfg.predict import share

    monkeypatch.setattr(share, "CHUNK", 4)
    calls = {"n": 0}
    real = generate.TransformersEngine.generate

    def flaky(self, requests, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, requests, **kwargs)

    monkeypatch.setattr(generate.TransformersEngine, "generate", flaky)
    out = tmp_path / "labels.csv"
    stopped = cli("predict", LABEL, "--output", out, "--limit", "6", *FAST)
    assert (
        stopped.exit_code == 130
        and "continue with" in stopped.output
        and "--resume" in stopped.output
    )
    assert not out.exists() and list(tmp_path.glob("labels.csv.partial*.jsonl"))
    refused = cli("predict", LABEL, "--output", out, "--limit", "6", *FAST)
    assert refused.exit_code == 2 and "--resume" in refused.output
    asked = []
    monkeypatch.setattr(
        generate.TransformersEngine,
        "generate",
        lambda self, requests, **kw: asked.append(len(requests)) or real(self, requests, **kw),
    )
    done = cli("predict", LABEL, "--output", out, "--limit", "6", "--resume", *FAST)
    assert done.exit_code == 0, done.output
    assert sum(asked) == report_of(out)["predicted"] - 4  # the first chunk was kept
    assert len(rows_of(out)) == 6


def test_resume_refuses_a_table_that_changed_since(cli, tmp_path, monkeypatch):
    """Answers are journaled by row: re-sorting the input before --resume would misplace them."""
    import csv

    from llmscisci_cfg.models import generate
    from llmscisci_cfg.resources import root

    with open(root("assets") / "sample" / "reports.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    data = tmp_path / "reports.csv"

    def write(ordered):
        with open(data, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *ordered])

    write(rows[:6])
    monkeypatch.setattr(generate.TransformersEngine, "generate", _interrupt_second_call())
    out = tmp_path / "labels.csv"
    sets = (*FAST, "--set", f"data.source.path={data}")
    from llmscisci_cfg.predict import share

    monkeypatch.setattr(share, "CHUNK", 4)
    assert cli("predict", LABEL, "--output", out, *sets).exit_code == 130
    write(list(reversed(rows[:6])))  # the same rows, re-sorted
    resumed = cli("predict", LABEL, "--output", out, "--resume", *sets)
    assert resumed.exit_code == 2 and "changed since" in resumed.output, resumed.output
    assert not out.exists()


def _interrupt_second_call():
    from llmscisci_cfg.models import generate

    real, calls = generate.TransformersEngine.generate, {"n": 0}

    def flaky(self, requests, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, requests, **kwargs)

    return flaky


def test_few_shot_records_its_examples_and_never_the_row_itself(cli, tmp_path):
    out = tmp_path / "labels.jsonl"
    sets = ("--set", "method.shots=2", "--set", "method.selection=stratified")
    labels = ("--set", "data.columns.label={easy: y_easy_gpt4, difficult: y_diff_gpt4}")
    result = cli("predict", LABEL, "--output", out, "--limit", "5", *FAST, *sets, *labels)
    assert result.exit_code == 0, result.output
    for row in rows_of(out):
        for aspect in ("easy", "difficult"):
            if row[f"{aspect}_reason"] != "empty_text":
                assert len(row[f"{aspect}_shots"]) == 2 and row["doi"] not in row[f"{aspect}_shots"]
    assert report_of(out)["shots"] == {"k": 2, "selection": "stratified"}


def test_extraction_validates_against_the_schema(cli, tmp_path):
    out = tmp_path / "facts.jsonl"
    result = cli(
        "predict", RECIPES / "repro_effort" / "extract_fields.yaml", "--output", out, "--limit", "8",
        "--set", "model.name_or_path=builtin:tiny", "--set", "model.family=null",
        "--set", "data.source.path=builtin:sample", "--set", "data.columns.text={report: easy}",
        "--set", "generation.max_new_tokens=256",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = report_of(out)
    assert report["schema_valid_rate"] == 1.0 and report["task"]["kind"] == "extract"
    for row in rows_of(out):
        if row["report_reason"] == "":
            fact = row["report_pred"]
            assert fact["code_released"] in ("yes", "no", "unclear")
            assert fact["claims_reproduced"] in ("all", "most", "some", "none", "unclear")
            assert len(fact["compute"]) <= 40


@pytest.mark.parametrize(
    ("task", "answers", "values"),
    [
        ("builtin:repro_judge", "{easy: [y_easy_gpt4], difficult: [y_diff_gpt4]}", {1, 2, 3, 4, 5}),
        (
            "builtin:repro_judge_pairwise",
            "{easy: [easy_gpt_response, easy_llama3_response], difficult: [difficult_gpt_response, difficult_llama3_response]}",
            {"A", "B", "tie"},
        ),
    ],
)
def test_judging(cli, tmp_path, task, answers, values):
    out = tmp_path / "judged.jsonl"
    result = cli(
        "predict", LABEL, "--output", out, "--limit", "4", "--set", f"data.task={task}",
        "--set", f"method.answers={answers}", "--set", "generation.max_new_tokens=80",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for row in rows_of(out):
        for aspect in ("easy", "difficult"):
            if row[f"{aspect}_reason"] == "":
                assert row[f"{aspect}_pred"] in values
    report = report_of(out)
    assert report["valid_rate"] == 1.0 and report["task"]["kind"] == "judge"


def test_rationales_become_traces_and_disagreements_are_dropped(cli, tmp_path, fake_server):
    """A teacher that answers [0, 0, 1, 0, 0] everywhere (a server: the untrained tiny model
    agrees with no gold label, and a prediction that keeps nothing is refused, test_output.py):
    sample row 1's easy trace is kept, the disagreements are dropped and counted."""
    fake_server.reply("<think>the text is clear</think>\n<label>[0, 0, 1, 0, 0]</label>")
    out = tmp_path / "traces.jsonl"
    result = cli(
        "predict", LABEL, "--output", out, "--limit", "6",
        "--set", "data.task=builtin:repro_rationale",
        "--set", "data.columns.label={easy: y_easy_gpt4, difficult: y_diff_gpt4}",
        *fake_server.sets(),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = report_of(out)
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(set(t) == {"id", "aspect", "trace"} for t in kept)
    assert {"id": "10.0000/llmscisci.sample.001", "aspect": "easy",
            "trace": "the text is clear"} in kept  # fmt: skip
    dropped = sum(sum(a["dropped"].values()) for a in report["aspects"].values())
    assert len(kept) + dropped == report["predicted"] and dropped > 0
    # the traces file is what data.traces reads
    from llmscisci_cfg.data.examples import load_traces
    from tests.data_helpers import make_job

    job = make_job(tmp_path, "builtin:sample", method="sft", traces={"path": str(out)})
    assert len(load_traces(job)) == len(kept)


@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        (
            ("--set", "data.columns.text={easy: nope}"),
            ["reports.csv: column 'nope' (data.columns.text.easy) not found"],
        ),
        (
            (
                "--set",
                "generation.backend=openai",
                "--set",
                "generation.base_url=http://127.0.0.1:9/v1",
                "--set",
                "generation.max_retries=0",
            ),
            ["cannot reach the server at http://127.0.0.1:9/v1"],
        ),
        (
            (
                "--set",
                "generation.backend=openai",
                "--set",
                "generation.base_url=http://127.0.0.1:9/v1",
                "--set",
                "generation.api_key_env=LLMSCISCI_UNSET_KEY",
            ),
            ["LLMSCISCI_UNSET_KEY is not set"],
        ),
        (("--set", "method.shots=2"), ["method.shots needs labelled examples"]),
        (("--set", "data.task=builtin:repro_judge"), ["needs 1 answer column(s) for easy"]),
    ],
)
def test_bad_input_is_exit_2_and_leaves_no_output(cli, tmp_path, sets, needles):
    out = tmp_path / "labels.csv"
    result = cli("predict", LABEL, "--output", out, "--limit", "3", *FAST, *sets)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output
    assert not out.exists()
    assert not list(tmp_path.glob("labels.csv.partial*"))  # nothing to resume: no journal
    again = cli("predict", LABEL, "--output", out, "--limit", "3", *FAST, *sets)
    assert "an earlier prediction" not in again.output and needles[0] in again.output


def test_an_unsupported_field_type_is_named(cli, tmp_path):
    task = tmp_path / "task.yaml"
    from llmscisci_cfg.resources import root

    text = (root("assets") / "tasks" / "repro_extract.yaml").read_text()
    task.write_text(
        text.replace(
            "      type: string\n      maxLength: 40", "      type: string\n      format: date"
        )
    )
    result = cli(
        "validate", RECIPES / "repro_effort" / "extract_fields.yaml", "--set", f"data.task={task}"
    )
    assert result.exit_code == 2 and "fields" in result.output and "format" in result.output


def test_plan_of_a_predict_recipe(cli):
    result = cli("plan", LABEL)
    assert (
        result.exit_code == 0
        and "engine             transformers, model builtin:tiny" in result.output
    )
    refused = cli("run", LABEL)
    assert refused.exit_code == 2 and "llmscisci predict" in refused.output


def test_auto_compile_is_decided_over_the_whole_job():
    """A long predict compiles once, though no chunk alone has enough decode steps."""
    from types import SimpleNamespace

    from llmscisci_cfg.models.generate import Request, Sampling
    from llmscisci_cfg.predict.share import decide_compile

    def engine():
        return SimpleNamespace(may_compile=True, compiled=False, batch_size=16)

    one = [Request(prompt="x", sampling=Sampling(max_new_tokens=256))]
    long, short = engine(), engine()
    decide_compile(long, one * 10_000)  # 625 batches x 256 steps
    decide_compile(short, one * 48)  # 3 batches x 256 steps: compiling would not pay
    assert long.compiled and not short.compiled


def test_overwrite_forgets_the_figures_of_an_earlier_sharded_run(cli, tmp_path, fake_server):
    out = tmp_path / "labels.csv"
    stale = tmp_path / "labels.csv.stats.rank1.json"  # left by a crashed 2-process run
    stale.write_text(json.dumps({"rows": 10**6, "completion_tokens": 10**9, "seconds": 1.0}))
    args = ("predict", LABEL, "--output", out, "--limit", "2", "--overwrite", *FAST)
    assert cli(*args, *fake_server.sets()).exit_code == 0
    assert report_of(out)["tokens_per_second"] < 10**6 and not stale.exists()


@pytest.fixture
def five_rows(tmp_path):
    """The first five sample reports, as their own table."""
    from llmscisci_cfg.data.table import read_table, write_table
    from llmscisci_cfg.resources import root

    source = read_table(root("assets") / "sample" / "reports.csv")
    return write_table(tmp_path / "five.csv", source.rows[:5], source.columns)


def test_limit_then_resume_asks_each_section_once(cli, tmp_path, five_rows, fake_server):
    out, data = tmp_path / "labels.csv", ("--set", f"data.source.path={five_rows}")
    args = ("predict", LABEL, "--output", out, *FAST, *fake_server.sets(), *data)
    assert cli(*args, "--limit", "2").exit_code == 0
    first = fake_server.asked
    result = cli(*args, "--limit", "4", "--resume")
    assert result.exit_code == 0, result.output
    assert len(rows_of(out)) == 4 and 0 < fake_server.asked - first <= 4  # rows 3 and 4 only
    done = fake_server.asked
    result = cli(*args, "--resume")
    assert result.exit_code == 0 and len(rows_of(out)) == 5 and fake_server.asked - done <= 2
    assert not list(tmp_path.glob("labels.csv.partial*"))  # the whole table: journal gone
    done, before = fake_server.asked, out.read_bytes()
    result = cli(*args, "--resume")
    assert result.exit_code == 0 and "already complete (5 rows); nothing to do" in result.output
    assert fake_server.asked == done and out.read_bytes() == before
    shrink = cli(*args, "--resume", "--limit", "2")
    assert shrink.exit_code == 2 and "holds 5 rows" in shrink.output
    other = cli(*args, "--resume", "--set", "generation.max_new_tokens=41")
    assert other.exit_code == 2 and "with other settings (generation:" in other.output
    assert fake_server.asked == done and out.read_bytes() == before


def test_resume_with_other_settings_is_refused(cli, tmp_path, five_rows, fake_server):
    out, data = tmp_path / "labels.csv", ("--set", f"data.source.path={five_rows}")
    args = ("predict", LABEL, "--output", out, *FAST, *fake_server.sets(), *data)
    assert cli(*args, "--limit", "1").exit_code == 0
    changed = cli(*args, "--resume", "--set", "generation.structured=false")
    assert changed.exit_code == 2, changed.output
    assert "labels.csv.partial.jsonl was written with other settings (generation:" in changed.output
    assert "start again with --overwrite" in changed.output


def test_predicting_on_a_predicted_table_never_overwrites_its_columns(
    cli, tmp_path, five_rows, fake_server
):
    first = tmp_path / "first.csv"
    served = (*FAST, *fake_server.sets())
    data = ("--set", f"data.source.path={five_rows}")
    assert cli("predict", LABEL, "--output", first, *served, *data).exit_code == 0
    again = ("predict", LABEL, *served, "--set", f"data.source.path={first}")
    clash = cli(*again, "--output", tmp_path / "second.csv")
    assert clash.exit_code == 2, clash.output
    assert "already has the column(s) easy_pred, easy_raw" in clash.output
    assert "method.output_prefix" in clash.output and not (tmp_path / "second.csv").exists()
    second = tmp_path / "second.csv"
    ok = cli(*again, "--output", second, "--set", "method.output_prefix=again_")
    assert ok.exit_code == 0, ok.output
    before, after = rows_of(first), rows_of(second)
    for old, new in zip(before, after, strict=True):
        assert {k: new[k] for k in old} == old  # the first prediction's columns untouched
        assert "again_easy_pred" in new and "again_difficult_reason" in new


@pytest.mark.parametrize(
    "args", [("preprocess", LABEL), ("eval", "--recipe", LABEL, "--limit", "2")]
)
def test_training_data_commands_refuse_a_predict_recipe(cli, args):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "a predict recipe (method: predict) builds no train/test split" in result.output
    assert "llmscisci predict RECIPE --limit N" in result.output


def test_long_sections_are_truncated_behind_a_server_too(cli, tmp_path, five_rows, server):
    """With the openai backend over a model whose config is here (builtin:tiny behind `serve`),
    a section longer than the context is cut to fit, as with the local engine."""
    from llmscisci_cfg.data.table import read_table, write_table

    table = read_table(five_rows)
    rows = [dict(r) for r in table.rows]
    rows[0]["easy"] = "The code ran without changes. " * 1500  # ~9k tokens of the tiny model
    long = write_table(tmp_path / "long.csv", rows, table.columns)
    out = tmp_path / "labels.csv"
    result = cli(
        "predict", LABEL, "--output", out, "--set", "generation.max_new_tokens=40",
        "--set", f"data.source.path={long}",
        "--set", "generation.backend=openai", "--set", f"generation.base_url={server.url}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert report_of(out)["truncated"] >= 1 and rows_of(out)[0]["easy_truncated"] in (True, "True")


def test_resume_of_a_finished_output_from_another_table_is_refused(
    cli, tmp_path, five_rows, fake_server
):
    out = tmp_path / "labels.csv"
    args = ("predict", LABEL, "--output", out, *FAST, *fake_server.sets())
    assert cli(*args, "--set", f"data.source.path={five_rows}").exit_code == 0
    edited = tmp_path / "edited.csv"
    edited.write_text(five_rows.read_text().replace("clearly", "plainly", 1))
    result = cli(*args, "--resume", "--set", f"data.source.path={edited}")
    assert result.exit_code == 2 and "was predicted from another version of" in result.output
    report = json.loads(Path(f"{out}.report.json").read_text())
    del report["settings"]  # as an older llmscisci wrote it
    Path(f"{out}.report.json").write_text(json.dumps(report))
    old = cli(*args, "--resume", "--set", f"data.source.path={five_rows}")
    assert old.exit_code == 2 and "does not record the settings" in old.output
