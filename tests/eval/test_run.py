"""``llmscisci eval`` end to end on a tiny run: files, recomputable metrics, the split, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmscisci_cfg.eval import report as eval_report
from llmscisci_cfg.runs.rundir import FINAL, MANIFEST, RESOLVED
from llmscisci_cfg.task.answer import parse_completion

SFT = "builtin:quickstart/sft_tiny"
# free decoding (structured output needs room for the whole answer): a few tokens suffice here
FREE = ("--set", "generation.structured=false")
FAST = ("--limit", "6", "--max-new-tokens", "12", "--batch-size", "4", *FREE)
TINY = ("--limit", "2", "--max-new-tokens", "2", *FREE)  # when only the files matter


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_eval_run_with_reference_writes_every_file_and_recomputes(cli, sft_run, tmp_path):
    out = tmp_path / "eval"
    result = cli("eval", sft_run, "--reference", "--output-dir", out, *FAST)
    assert result.exit_code == 0, result.output

    for path in eval_report.files(out):
        assert path.is_file() and path.stat().st_size > 0, path
    assert (out / eval_report.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = _lines(out / eval_report.PREDICTIONS)
    assert [r["model"] for r in rows] == ["policy"] * 6 + ["reference"] * 6
    keys = ("aspect", "completion", "gold", "id", "model", "predicted", "prompt_excerpt")
    assert {tuple(sorted(r)) for r in rows} == {(*keys, "reward", "rewards")}
    assert all(r["prompt_excerpt"] and "<text>" not in r["prompt_excerpt"] for r in rows)
    assert [(r["id"], r["aspect"]) for r in rows[:6]] == [(r["id"], r["aspect"]) for r in rows[6:]]
    for r in rows:
        assert len(r["gold"]) == 5 and r["predicted"] == parse_completion(r["completion"], 5)[1]

    report = json.loads((out / eval_report.REPORT_JSON).read_text())
    assert report == eval_report.recompute(out / eval_report.PREDICTIONS)
    assert eval_report.models(report) == ["policy", "reference"]
    for model in (report[m] for m in eval_report.models(report)):
        assert set(model) <= {"overall", "easy", "difficult"} and "overall" in model
        assert model["overall"]["n"] == 6
        assert len(model["overall"]["per_class"]) == 5 * (len(model) - 1)
        assert model["overall"]["mean_reward"] is None  # SFT recipe: no reward stack

    meta = json.loads((out / eval_report.META).read_text())
    assert meta["split"] == "test" and meta["max_new_tokens"] == 12 and meta["limit"] == 6
    assert meta["split_matches_training"] is True
    assert "builtin:tiny" in meta["models"]["reference"]

    md = (out / eval_report.REPORT_MD).read_text()
    assert "complement of the gold vector" in md and "| format_valid_rate |" in md
    assert "## Examples" in md and "**reference**" in md

    # the methods section: the report opens with it; report.json and meta.json hold its facts
    from llmscisci_cfg.recipe.loader import load_job as _load

    task = _load(SFT).task
    assert md.splitlines()[2] == "## Methods"
    methods = md.split("## Methods\n\n", 1)[1].split("\n", 1)[0]
    for fact in ("Task: repro_effort", "Codebook: easy: 5 categories (Availability of Code",
                 "Data: builtin:sample (sha256", "held out, seed 0 (train.seed)",
                 "policy: trained from builtin:tiny (random weights from seed 0)",
                 "SFT with TRL's trl.SFTTrainer (learning_rate", "reference: builtin:tiny",
                 "Prompts (verbatim in the appendix)", "Decoding: greedy decoding",
                 "BCa) bootstrap over 3 documents", "McNemar's exact test",
                 "Software: llmscisci"):  # fmt: skip
        assert fact in methods, fact
    assert report["methods"] == meta["methods"]
    assert set(report["methods"]) == {
        "task", "prompts", "models", "decoding", "data", "split", "training", "tool", "versions",
    }  # fmt: skip
    assert report["methods"]["prompts"]["system_template"] == task.system_prompt
    assert report["methods"]["data"]["test_set_sha256"] == report["test_set_sha256"]
    assert report["methods"]["models"]["policy"]["weights_sha256"]
    appendix = md.split("## Appendix: prompts", 1)[1]
    assert task.system_prompt.strip() in appendix and "[section text]" in appendix
    assert md.index("## Methods") < md.index("## Warnings") < md.index("## Overall")

    # the test set is named: the same sha256 as `preprocess` of the recipe, in every file
    from llmscisci_cfg.recipe.loader import load_job
    from tests.data_helpers import build_dataset

    sha = build_dataset(load_job(SFT))[1].test_set_sha256
    assert report["test_set_sha256"] == meta["test_set_sha256"] == sha and len(sha) == 64
    assert f"test set sha256: `{sha}`" in md and f"test set sha256: {sha}" in result.output

    lines = result.output.strip().splitlines()
    assert lines[-1] == f"report: {out / eval_report.REPORT_MD}"
    assert lines[-4].split()[:4] == ["model", "n", "format_valid", "label_valid"]
    assert lines[-3].split()[0] == "policy" and lines[-2].split()[0] == "reference"
    assert float(lines[-3].split()[2]) == round(report["policy"]["overall"]["format_valid_rate"], 3)
    assert "multi answers" in result.output and "BCa bootstrap intervals" in result.output


def test_default_output_dir_is_run_eval(cli, sft_run):
    result = cli("eval", sft_run, "--limit", "2", "--max-new-tokens", "4", *FREE)
    assert result.exit_code == 0, result.output
    rows = _lines(sft_run / "eval" / eval_report.PREDICTIONS)
    assert [r["model"] for r in rows] == ["policy", "policy"]
    card = (sft_run / "final" / "README.md").read_text()  # the run's model card gets the summary
    assert "## Evaluation" in card and "paired tests): `eval/report.md`" in card
    assert "the test split (its first 2 examples only)" in card
    assert "95% BCa bootstrap intervals over 1 documents" in card  # with intervals
    assert "micro_f1" in card and "] " in card or "]\n" in card
    assert "- **warning**: the test set has 1 documents (fewer than 30)" in card
    assert json.loads((sft_run / "eval" / "report.json").read_text())["test_set_sha256"] in card


def test_an_output_dir_inside_the_run_named_another_way_updates_the_card(cli, sft_run):
    out = sft_run / ".." / sft_run.name / "eval_again"  # not the run's own spelling
    result = cli(
        "eval", sft_run, "--limit", "1", "--max-new-tokens", "4", *FREE, "--output-dir", out
    )
    assert result.exit_code == 0, result.output
    assert "paired tests): `eval_again/report.md`" in (sft_run / "final" / "README.md").read_text()


def test_rebuilt_split_equals_training(sft_run, tmp_path, monkeypatch):
    """Eval rebuilds the test split from recipe.resolved.yaml, from scratch, identically."""
    from llmscisci_cfg.eval.evaluate import eval_data
    from llmscisci_cfg.models.load import open_tokenizer
    from llmscisci_cfg.models.refs import named_model
    from llmscisci_cfg.recipe.loader import load_job
    from llmscisci_cfg.runs.rundir import RunDir
    from tests.data_helpers import build_dataset

    trained, _ = build_dataset(load_job(SFT))  # what the run trained on (from its cache)
    monkeypatch.setenv("LLMSCISCI_CACHE", str(tmp_path / "fresh"))  # force a real rebuild
    run = RunDir.open(sft_run)
    job = run.job()
    tokenizer, _ = open_tokenizer(named_model(str(run.path)), job.template)
    data = eval_data(job, "test", None, tokenizer)
    assert data.cache_key == run.data_cache_key
    assert data.rows.to_list() == trained["test"].to_list()
    assert len(data.rows) > 0 and not {r["id"] for r in data.rows} & set(trained["train"]["id"])


def test_zero_shot_recipe_model_with_reward_stack(cli, cache, tmp_path):
    """--recipe/--model, no run; a GRPO recipe's rewards are averaged per model."""
    out = tmp_path / "zs"
    result = cli(
        "eval", "--recipe", "builtin:quickstart/grpo_tiny", "--model", "builtin:tiny",
        "--set", "model.name_or_path=builtin:tiny", "--reference", "--output-dir", out, *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / eval_report.REPORT_JSON).read_text())
    assert report == eval_report.recompute(out / eval_report.PREDICTIONS)
    rows = _lines(out / eval_report.PREDICTIONS)
    assert {r["model"] for r in rows} == {"policy", "reference"}
    for model in eval_report.models(report):
        parts = report[model]
        mine = [r for r in rows if r["model"] == model]
        o = parts["overall"]
        assert set(o["mean_rewards"]) == {"format", "stepwise_label", "hamming"}
        assert o["mean_reward"] == pytest.approx(sum(r["reward"] for r in mine) / len(mine))
        # the format reward is 1 exactly when the completion is format-valid
        assert o["mean_rewards"]["format"] == pytest.approx(o["format_valid_rate"])
    meta = json.loads((out / eval_report.META).read_text())
    assert meta["run_dir"] is None and meta["max_new_tokens"] == 12
    assert "zero-shot" in meta["models"]["policy"]


# ----------------------------------------------------------------------------- bad inputs


def _fake_run(tmp_path: Path, with_final: bool) -> Path:
    """A run directory's files without training: the resolved recipe and a manifest."""
    from llmscisci_cfg.recipe.loader import load_job
    from llmscisci_cfg.runs.manifest import resolved_yaml

    run = tmp_path / "run"
    run.mkdir()
    (run / RESOLVED).write_text(resolved_yaml(load_job(SFT)))
    record = {"format": "llmscisci.run/1", "status": "failed", "final": {"kind": "full"}}
    (run / MANIFEST).write_text(json.dumps(record))
    if with_final:
        (run / FINAL).mkdir()
        (run / FINAL / "config.json").write_text("{}")
    return run


def test_not_a_directory(cli, tmp_path):
    result = cli("eval", tmp_path / "nope")
    assert result.exit_code == 2
    assert "nope: no such directory" in result.output


def test_directory_that_is_not_a_run(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    result = cli("eval", tmp_path)
    assert result.exit_code == 2
    assert (
        f"{tmp_path}: not a run directory (no recipe.resolved.yaml or manifest.json)"
        in result.output
    )


def test_run_without_final(cli, tmp_path):
    run = _fake_run(tmp_path, with_final=False)
    result = cli("eval", run)
    assert result.exit_code == 2
    assert "the run has no final/ model (run status: failed)" in result.output


def test_unknown_split_lists_the_existing_ones(cli, cache, tmp_path):
    run = _fake_run(tmp_path, with_final=True)
    result = cli("eval", run, "--split", "validation")
    assert result.exit_code == 2
    assert "--split validation: no such split; this recipe's splits: train, test" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either RUN_DIR or --recipe"),
        (("somewhere", "--recipe", SFT), "give either RUN_DIR or --recipe"),
        (("somewhere", "--model", "builtin:tiny"), "--model goes with --recipe"),
        (("--recipe", "nope.yaml"), "nope.yaml"),
    ],
)
def test_bad_argument_combinations(cli, args, message):
    result = cli("eval", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_copied_run_without_training_files_still_evaluates(cli, sft_run, tmp_path):
    """Only recipe.resolved.yaml, manifest.json and final/ are needed (no checkpoints/)."""
    run = tmp_path / "copy"
    run.mkdir()
    for name in (RESOLVED, MANIFEST):
        shutil.copy(sft_run / name, run / name)
    shutil.copytree(sft_run / FINAL, run / FINAL)
    result = cli("eval", run, "--limit", "1", "--max-new-tokens", "2", *FREE)
    assert result.exit_code == 0, result.output
    assert (run / "eval" / eval_report.REPORT_JSON).is_file()


@pytest.mark.slow
def test_quickstart_sft_beats_the_untrained_reference(cli, cache, tmp_path):
    """The README claim: after the quickstart SFT the format-valid rate exceeds the reference's."""
    run_dir = tmp_path / "quickstart_sft"
    result = cli("run", SFT, "--output-dir", run_dir)
    assert result.exit_code == 0, result.output
    result = cli("eval", run_dir, "--reference")
    assert result.exit_code == 0, result.output
    out = run_dir / "eval"
    report = json.loads((out / eval_report.REPORT_JSON).read_text())
    assert report == eval_report.recompute(out / eval_report.PREDICTIONS)
    policy, reference = report["policy"]["overall"], report["reference"]["overall"]
    assert policy["format_valid_rate"] > reference["format_valid_rate"]
    assert policy["label_valid_rate"] > reference["label_valid_rate"]
    assert policy["hamming_loss"] < reference["hamming_loss"]


@pytest.mark.parametrize("manifest", ["{broken", "[1, 2]"])
def test_unreadable_manifest(cli, tmp_path, manifest):
    run = _fake_run(tmp_path, with_final=True)
    (run / MANIFEST).write_text(manifest)
    result = cli("eval", run)
    assert result.exit_code == 2
    assert f"{run / MANIFEST}:" in result.output and "run manifest" in result.output


def test_score_rewards_as_trl_totals_them(tmp_path):
    """Rewards in eval go through `rewards.score.score`: None values are left out of the
    total, and a row every reward skips has no total (TRL marks it NaN, not 0)."""
    from llmscisci_cfg.eval.evaluate import score_rewards
    from llmscisci_cfg.recipe.schema import RewardSpec
    from llmscisci_cfg.rewards.compose import build_rewards
    from tests.data_helpers import LABELS, build_dataset, make_job, reports, write_csv

    (tmp_path / "skip.py").write_text(
        "def skip_short(completions, **kwargs):\n"
        "    return [None if len(c[0]['content']) < 5 else 0.5 for c in completions]\n"
    )
    write_csv(tmp_path / "r.csv", reports(4))
    job = make_job(tmp_path, "r.csv", columns={"label": LABELS}, length_filter=None)
    rows = build_dataset(job)[0]["train"].select(range(2))
    specs = [RewardSpec(name="hamming", weight=2.0), RewardSpec(name="skip.py:skip_short")]
    columns = ["id", "aspect", "gold"]
    stack = build_rewards(specs, tmp_path, job.label_kinds, None, columns)
    label = "[1, 0, 0, 0, 0]" if rows[0]["aspect"] == "easy" else "[0, 0, 0, 0, 1]"
    good = f"<think>x</think><label>{label}</label>"
    totals, values = score_rewards(stack, rows, [good, "no"])
    assert values == {"hamming": [1.0, 0.0], "skip_short": [0.5, None]}
    assert totals == [2.5, 0.0]
    alone = build_rewards(specs[1:], tmp_path, job.label_kinds, None, columns)
    assert score_rewards(alone, rows, [good, "no"]) == (
        [0.5, None],
        {"skip_short": [0.5, None]},
    )


def test_output_dir_holding_another_evaluation_is_refused(cli, sft_run, tmp_path):
    from llmscisci_cfg.digest import content_sha256
    from llmscisci_cfg.eval.evaluate import EVAL_MARKER

    out = tmp_path / "reports"
    out.mkdir()
    (out / eval_report.META).write_text(json.dumps({"run_dir": "/elsewhere/run"}))
    files = {eval_report.META: content_sha256(out / eval_report.META)}
    marker = {"format": "llmscisci.eval/1", "source": "/elsewhere/run", "files": files}
    (out / EVAL_MARKER).write_text(json.dumps(marker))
    result = cli("eval", sft_run, "--output-dir", out, *FAST)
    assert result.exit_code == 2
    assert "holds the evaluation of /elsewhere/run" in result.output
    assert json.loads((out / eval_report.META).read_text()) == {"run_dir": "/elsewhere/run"}
    (out / "notes.md").write_text("mine")
    result = cli("eval", sft_run, "--output-dir", out, "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    assert (out / "notes.md").read_text() == "mine"  # replaced only the evaluation's own files
    result = cli("eval", sft_run, "--output-dir", out, *FAST)
    assert result.exit_code == 2 and "not an evaluation's (notes.md)" in result.output


def test_reference_run_with_another_test_set_is_refused(cli, sft_run, tmp_path):
    """A run whose recipe holds out other documents is not put beside the policy: exit 2,
    both runs and both sha256 named, before any model loads."""
    import yaml

    from llmscisci_cfg.eval.evaluate import check_reference_runs, run_test_set_sha256
    from llmscisci_cfg.eval.references import Reference
    from llmscisci_cfg.runs.rundir import RunDir

    def copy(name: str, seed: int | None) -> Path:
        run = tmp_path / name
        run.mkdir()
        shutil.copy(sft_run / MANIFEST, run / MANIFEST)
        shutil.copytree(sft_run / FINAL, run / FINAL)
        recipe = yaml.safe_load((sft_run / RESOLVED).read_text())
        recipe["data"]["split"]["seed"] = seed
        (run / RESOLVED).write_text(yaml.safe_dump(recipe, sort_keys=False))
        return run

    same, other = copy("same", None), copy("other", 7)
    mine, theirs = (run_test_set_sha256(RunDir.open(r)) for r in (sft_run, other))
    assert run_test_set_sha256(RunDir.open(same)) == mine != theirs
    check_reference_runs("run x", mine, [Reference("same", "run", "m", run_dir=same)])

    result = cli("eval", sft_run, "--reference", other, *FAST, "--output-dir", tmp_path / "e")
    assert result.exit_code == 2
    for needle in (str(sft_run), str(other), mine, theirs, "different test sets"):
        assert needle in result.output, needle
    assert "Traceback" not in result.output and not (tmp_path / "e").exists()


def test_two_references_each_get_metrics_intervals_and_a_paired_comparison(cli, sft_run, tmp_path):
    """``--reference base --reference RUN``: the untrained base (for SFT, the recipe's model)
    and a run directory (here the policy's own run, so its answers are the policy's)."""
    out = tmp_path / "eval"
    result = cli(
        "eval", sft_run, "--reference", "base", "--reference", sft_run, "--output-dir", out, *FAST
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / eval_report.REPORT_JSON).read_text())
    assert report == eval_report.recompute(out / eval_report.PREDICTIONS)
    assert eval_report.models(report) == ["policy", "base", "quickstart_sft"]
    for model in ("base", "quickstart_sft"):
        overall = report[model]["overall"]
        assert overall["n"] == 6 and set(overall["intervals"]) >= {
            "micro_f1",
            "accuracy",
            "jaccard",
        }
    comparisons = {c["reference"]: c for c in report["comparisons"]}
    assert list(comparisons) == ["base", "quickstart_sft"]
    assert all(c["policy"] == "policy" and c["examples"] == 6 for c in comparisons.values())
    same = comparisons["quickstart_sft"]
    assert {k: d["difference"] for k, d in same["metric"].items()} == {
        k: (None if report["policy"]["overall"][k] is None else 0.0) for k in same["metric"]
    }
    assert same["mcnemar"]["b"] == same["mcnemar"]["c"] == 0
    meta = json.loads((out / eval_report.META).read_text())
    assert "builtin:tiny (weights from seed" in meta["models"]["base"]
    assert meta["models"]["quickstart_sft"] == f"{sft_run / FINAL} (run quickstart_sft)"
    md = (out / eval_report.REPORT_MD).read_text()
    assert "policy − base" in md and "policy − quickstart_sft" in md
    table = result.output.strip().splitlines()
    names = [
        line.split()[0] for line in table if line.split()[:1] in (["base"], ["quickstart_sft"])
    ]
    assert names == ["base", "quickstart_sft"]


def test_output_dir_files_eval_did_not_write_are_never_replaced(cli, sft_run, tmp_path):
    """Issue 21: `eval --output-dir userout` replaced the user's userout/report.md without
    --overwrite. A file with one of eval's names is replaced only when eval's marker says eval
    wrote exactly that content."""
    from llmscisci_cfg.eval.evaluate import EVAL_MARKER

    out = tmp_path / "userout"
    out.mkdir()
    (out / eval_report.REPORT_MD).write_text("# my report")
    result = cli("eval", sft_run, "--output-dir", out, *TINY)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "holds report.md, which llmscisci eval did not write there" in result.output
    assert (out / eval_report.REPORT_MD).read_text() == "# my report"
    forged = {"format": "llmscisci.eval/1", "source": str(sft_run), "files": {"report.md": "0"}}
    (out / EVAL_MARKER).write_text(json.dumps(forged))  # a marker must match the content too
    assert cli("eval", sft_run, "--output-dir", out, *TINY).exit_code == 2
    assert (out / eval_report.REPORT_MD).read_text() == "# my report"
    result = cli("eval", sft_run, "--output-dir", out, "--overwrite", *TINY)
    assert result.exit_code == 0, result.output
    marker = json.loads((out / EVAL_MARKER).read_text())
    assert sorted(marker["files"]) == sorted(p.name for p in eval_report.files(out))
    result = cli("eval", sft_run, "--output-dir", out, *TINY)  # its own files: replaced
    assert result.exit_code == 0, result.output
    with (out / eval_report.REPORT_MD).open("a") as fh:
        fh.write("my edit\n")
    result = cli("eval", sft_run, "--output-dir", out, *TINY)
    assert (
        result.exit_code == 2 and "report.md, which llmscisci eval did not write" in result.output
    )
    assert (out / eval_report.REPORT_MD).read_text().endswith("my edit\n")


def test_output_dir_inside_the_run_joins_its_inventory(cli, sft_run, tmp_path):
    """What eval writes into the run directory is the run's (`run --overwrite` may remove it);
    a file the user adds beside it is not."""
    from llmscisci_cfg.errors import UserError
    from llmscisci_cfg.runs import rundir

    run = tmp_path / "copy"
    shutil.copytree(sft_run, run, ignore=shutil.ignore_patterns("eval*"))
    result = cli("eval", run, *TINY)
    assert result.exit_code == 0, result.output
    listed = json.loads((run / MANIFEST).read_text())["inventory"]
    assert {f"eval/{p.name}" for p in eval_report.files(run / "eval")} <= set(listed)
    assert rundir.prepare(run, resume=False, overwrite=True) is True
    (run / "eval" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"did not write \(eval/notes.txt\)"):
        rundir.prepare(run, resume=False, overwrite=True)
