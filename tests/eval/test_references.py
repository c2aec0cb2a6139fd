"""``eval --reference``: parsing (flag alone, base, a path, repeated), the recipe chain that
``base`` follows through run manifests, labels and bad values; and eval validity under the
task's label constraints. No model is loaded here (see test_run.py for the end-to-end run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmscisci_cfg.cli.eval import eval_command
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.eval import report as eval_report
from llmscisci_cfg.eval.evaluate import predictions_for
from llmscisci_cfg.eval.references import chain_base, resolve_references
from llmscisci_cfg.runs.rundir import FINAL, MANIFEST, RESOLVED, RUN_FORMAT
from llmscisci_cfg.task.constraints import LabelRule
from llmscisci_cfg.task.kinds import MultiLabel
from tests.data_helpers import make_job


def fake_run(path: Path, base_model: str, base_seed: int | None = None, name: str = "sft") -> Path:
    """A run directory as eval reads it: manifest (name, final's base), resolved recipe, final/."""
    (path / FINAL).mkdir(parents=True)
    (path / FINAL / "config.json").write_text("{}")
    (path / RESOLVED).write_text("# resolved\n")
    manifest = {
        "format": RUN_FORMAT,
        "status": "completed",
        "recipe": {"resolved": {"name": name}},
        "final": {"kind": "full", "base_model": base_model, "base_seed": base_seed},
    }
    (path / MANIFEST).write_text(json.dumps(manifest))
    return path


def job_on(tmp_path: Path, model: str):
    """A GRPO job on the sample data whose model is ``model``."""
    return make_job(tmp_path, "builtin:sample", overrides=(f"model.name_or_path={model}",))


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["runs/x"], ()),
        (["runs/x", "--reference"], ("reference",)),  # the flag alone, as before
        (["runs/x", "--reference", "--limit", "2"], ("reference",)),
        (["runs/x", "--reference", "base"], ("base",)),
        (["runs/x", "--reference=runs/sft"], ("runs/sft",)),
        (["runs/x", "--reference", "base", "--reference", "runs/sft"], ("base", "runs/sft")),
        (["runs/x", "--reference", "--reference", "base"], ("reference", "base")),
    ],
)
def test_reference_values(args, expected):
    ctx = eval_command.make_context("eval", list(args))
    assert ctx.params["references"] == expected and ctx.params["run_dir"] == Path("runs/x")


def test_a_run_dir_after_the_option_is_its_value_and_the_error_says_so(cli):
    result = cli("eval", "--reference", "runs/x")
    assert result.exit_code == 2
    assert "--reference takes a value, so write RUN_DIR before it" in result.output


# ----------------------------------------------------------------------------- base: the chain


def test_base_of_a_recipe_on_a_builtin_is_the_recipe_model(tmp_path):
    job = job_on(tmp_path, "builtin:tiny")
    assert chain_base(job) == ("builtin:tiny", job.recipe.train.seed, ())
    (base,) = resolve_references(["base"], job)
    assert base.label == "base" and base.is_recipe_model


def test_base_follows_the_runs_to_the_untrained_model(tmp_path):
    sft = fake_run(tmp_path / "sft", "builtin:tiny", base_seed=3)
    dpo = fake_run(tmp_path / "dpo", str(sft / FINAL), name="dpo")
    job = job_on(tmp_path, str(dpo / FINAL))  # GRPO on DPO on SFT on builtin:tiny
    assert chain_base(job) == ("builtin:tiny", 3, (dpo.resolve(), sft.resolve()))
    recipe, base = resolve_references(["reference", "base"], job)
    assert (recipe.label, recipe.model, recipe.is_recipe_model) == (
        "reference",
        str((dpo / FINAL).resolve()),
        True,
    )
    assert (base.label, base.model, base.seed, base.is_recipe_model) == (
        "base",
        "builtin:tiny",
        3,
        False,
    )
    assert base.what == f"builtin:tiny (weights from seed 3), the untrained base of {dpo.resolve()}"


def test_base_of_a_hub_model_has_no_seed(tmp_path):
    sft = fake_run(tmp_path / "sft", "google/gemma-3-1b-it", base_seed=None)
    assert chain_base(job_on(tmp_path, str(sft / FINAL)))[:2] == ("google/gemma-3-1b-it", None)


def test_a_cycle_in_the_chain_is_a_user_error(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    fake_run(a, str(b / FINAL))
    fake_run(b, str(a / FINAL))
    with pytest.raises(UserError, match="the chain of base models has a cycle"):
        chain_base(job_on(tmp_path, str(a / FINAL)))


# ----------------------------------------------------------------------------- paths and labels


def test_run_and_model_directories_are_labelled_by_their_names(tmp_path):
    job = job_on(tmp_path, "builtin:tiny")
    one = fake_run(tmp_path / "one", "builtin:tiny", name="sft")
    two = fake_run(tmp_path / "two", "builtin:tiny", name="sft")
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text("{}")
    refs = resolve_references([str(one), str(two / FINAL), str(merged), "reference"], job)
    assert [(r.label, r.kind) for r in refs] == [
        ("sft", "run"),
        ("sft-2", "run"),  # a second run of the same recipe
        ("merged", "model"),
        ("reference", "recipe"),
    ]
    assert refs[0].run_dir == one.resolve() and refs[0].model == str(one / FINAL)
    assert refs[1].run_dir == two.resolve()
    policy_named = fake_run(tmp_path / "p", "builtin:tiny", name="policy")
    assert resolve_references([str(policy_named)], job)[0].label == "policy-2"  # reserved


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("nowhere", "--reference nowhere: no such directory; give `base`, a run directory"),
        ("empty", "neither a run directory (no manifest.json) nor a model directory"),
    ],
)
def test_bad_values_are_user_errors(tmp_path, monkeypatch, value, needle):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        resolve_references([value], job_on(tmp_path, "builtin:tiny"))
    assert needle in str(info.value)


def test_the_same_reference_twice_is_refused(tmp_path):
    run = fake_run(tmp_path / "sft", "builtin:tiny")
    job = job_on(tmp_path, "builtin:tiny")
    with pytest.raises(UserError, match="given twice"):
        resolve_references([str(run), str(run / FINAL)], job)
    with pytest.raises(UserError, match="--reference base: given twice"):
        resolve_references(["base", "base"], job)


def test_a_run_without_final_is_refused(tmp_path):
    run = fake_run(tmp_path / "sft", "builtin:tiny")
    (run / FINAL / "config.json").unlink()
    with pytest.raises(UserError, match="the run has no final/ model"):
        resolve_references([str(run)], job_on(tmp_path, "builtin:tiny"))


# ----------------------------------------------------------------------------- validity


def test_a_prediction_that_breaks_the_constraints_is_invalid(tmp_path):
    rows = [
        {"id": "d1", "aspect": "easy", "gold": [1, 0, 0, 0, 0]},
        {"id": "d1", "aspect": "difficult", "gold": [0, 0, 0, 0, 1]},
    ]
    texts = ["<think>x</think><label>[0, 0, 0, 0, 0]</label>"] * 2
    plain_kinds = {"easy": MultiLabel.plain(5), "difficult": MultiLabel.plain(5)}
    plain = predictions_for("policy", None, rows, texts, plain_kinds)
    assert [p.predicted for p in plain] == [[0, 0, 0, 0, 0]] * 2
    rules = {"easy": MultiLabel.plain(5, LabelRule(5, (4,), 1)), "difficult": MultiLabel.plain(5)}
    strict = predictions_for("policy", None, rows, texts, rules)
    assert [p.predicted for p in strict] == [None, [0, 0, 0, 0, 0]]
    rep = eval_report.build_report(strict, rules, 10)
    assert rep["policy"]["easy"]["label_valid_rate"] == 0.0
    assert rep["policy"]["easy"]["hamming_loss"] == 1.0  # scored as the complement of gold
    assert rep["policy"]["difficult"]["label_valid_rate"] == 1.0


def test_report_md_states_the_constraints_only_when_the_task_has_them():
    from llmscisci_cfg.eval.report import EvalMeta, Prediction

    cats = {"easy": ["a", "b"]}
    preds = [Prediction("d1", "easy", "policy", [1, 0], "x", None)]
    meta = dict(
        recipe="r",
        run_dir=None,
        split="test",
        categories=cats,
        models={"policy": "m"},
        max_new_tokens=8,
        batch_size=1,
        limit=None,
        device="cpu",
        dtype="float32",
        reward_names=[],
    )
    rep = eval_report.build_report(preds, EvalMeta(**meta).label_kinds(), 10)
    plain = eval_report.markdown(rep, preds, EvalMeta(**meta))
    assert "label constraints" not in plain
    rules = {"easy": LabelRule(2, (1,), 1, ("2",)).describe()}
    strict = eval_report.markdown(rep, preds, EvalMeta(**meta, label_constraints=rules))
    assert (
        "- label constraints of the task (a label that breaks them is invalid): "
        "easy: category 2 alone, at least 1 category set\n" in strict
    )
