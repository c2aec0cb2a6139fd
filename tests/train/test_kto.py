"""KTO (`llmscisci_cfg.train.methods.kto`): rows from answers scored against gold, the recipe's
checks, what TRL receives, the memory estimate, and `llmscisci run` / `eval` on CPU."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from llmscisci_cfg.data.examples import build_rows, collect
from llmscisci_cfg.data.sources import load_source
from llmscisci_cfg.errors import RecipeError, UserError
from llmscisci_cfg.recipe.loader import load_job, load_recipe_text
from llmscisci_cfg.train import methods
from llmscisci_cfg.train.build import train_rows
from llmscisci_cfg.train.compile import compile_recipe
from tests.data_helpers import answer, build_dataset, make_job, report, write_csv
from tests.run_helpers import job_of, recipe_text, step_rows, write_recipe

KTO = "builtin:quickstart/kto_tiny"
FREE = ("--set", "generation.structured=false")


# ----------------------------------------------------------------------------- rows


def _rows_of(tmp_path, rows, held_out=frozenset()):
    write_csv(tmp_path / "r.csv", rows)
    job = make_job(tmp_path, "r.csv", "kto", aspects=["easy"])
    examples, _ = collect(load_source(job), job)
    counts = Counter()
    built, dropped = build_rows(methods.get("kto"), job, examples, held_out, counts)
    return built, dropped, counts


def test_each_answer_is_desirable_exactly_when_its_label_is_gold(tmp_path):
    """Gold [1, 0, 0, 0, 0]: the same label is desirable; another label, one the task's
    constraints refuse (category 5 with another), no label block, or a list of the wrong
    length are not; an empty answer is dropped and counted."""
    cases = [
        (answer("[1, 0, 0, 0, 0]", "gpt"), True),
        (answer("[1, 1, 0, 0, 0]", "gpt"), False),  # a wrong label
        (answer("[1, 0, 0, 0, 1]", "gpt"), False),  # category 5 is exclusive
        ("<think>gpt</think>", False),  # no label block
        (answer("[1, 0]", "gpt"), False),  # the wrong length
        ("", None),  # empty: dropped
    ]
    rows = []
    for i, (gpt, _) in enumerate(cases):
        row = report(i, easy=f"Easy part {i}.", difficult="Hard.")
        row["easy_gpt_response"] = gpt
        row["easy_llama3_response"] = answer("[0, 0, 0, 0, 1]", "llama")  # wrong every time
        rows.append(row)
    built, dropped, counts = _rows_of(tmp_path, rows)
    texts = {text for text, _ in cases}
    gpt = {r["id"]: r["label"] for r in built if r["completion"][0]["content"] in texts}
    assert gpt == {f"10.1/doc.{i:03d}": good for i, (text, good) in enumerate(cases) if text}
    llama = [r["label"] for r in built if "llama" in r["completion"][0]["content"]]
    assert llama == [False] * len(cases)
    assert dict(dropped) == {"empty_answer": 1} and len(built) == 2 * len(cases) - 1
    assert counts == {"desirable": 1, "undesirable": len(built) - 1}
    first = built[0]
    assert set(first) == {"id", "aspect", "prompt", "gold", "text", "completion", "label"}
    assert first["completion"] == [{"role": "assistant", "content": cases[0][0]}]
    assert first["gold"] == [1, 0, 0, 0, 0] and first["prompt"][0]["role"] == "system"


def test_a_held_out_example_is_one_row_of_its_gold_answer(tmp_path):
    """Eval reads the prompt and gold: the row's answer is gold as SFT writes it, so no model's
    answer (a long one, none at all) decides whether the example is kept or its text cut."""
    rows = [report(0, easy="Easy.", difficult="Hard."), report(1, easy="Easy.", difficult="Hard.")]
    rows[0]["easy_gpt_response"] = "<think>" + "long " * 2000 + "</think><label>[0]</label>"
    rows[1]["easy_gpt_response"] = ""
    rows[1]["easy_llama3_response"] = ""
    held = {"10.1/doc.000", "10.1/doc.001"}
    built, dropped, counts = _rows_of(tmp_path, rows, held)
    assert [r["id"] for r in built] == ["10.1/doc.000", "10.1/doc.001"] and not dropped
    job = make_job(tmp_path, "r.csv", "kto", aspects=["easy"])
    for row in built:
        gold = job.task.completion("", row["gold"], "easy")
        assert row["completion"] == [{"role": "assistant", "content": gold}] and row["label"]
    assert not counts  # the counts are of training rows


def test_the_built_dataset_is_what_kto_trainer_takes(tmp_path, cli):
    """prompt/completion/label (a bool column) plus id/aspect/gold; the test split holds one
    row per example, the same examples as the SFT quickstart's (its test-set sha256)."""
    job = load_job(KTO)
    dataset, rep = build_dataset(job)
    train, test = dataset["train"], dataset["test"]
    assert train.column_names == ["id", "aspect", "prompt", "gold", "completion", "label"]
    assert train.features["label"].dtype == "bool"
    answers = rep.summary()["answers"]
    assert answers["desirable"] + answers["undesirable"] == len(train) == 370
    assert answers == {"desirable": sum(train["label"]), "undesirable": 370 - sum(train["label"])}
    assert len(test) == len(set(zip(test["id"], test["aspect"], strict=True)))
    sft_dataset, sft = build_dataset(load_job("builtin:quickstart/sft_tiny"))
    assert rep.test_set_sha256 == sft.test_set_sha256

    def answers_of(split) -> list[str]:  # the label block (the SFT quickstart adds traces)
        return [c[0]["content"].split("</think>")[1] for c in split["completion"]]

    assert answers_of(test) == answers_of(sft_dataset["test"])  # gold, as SFT writes it

    # the trainer reads rows in order and pairs each prompt with the previous row's answer for
    # its KL term: built side by side, half of the neighbours answer the same section;
    # shuffled once with the seed, about none
    def neighbours(rows) -> int:
        keys = list(zip(rows["id"], rows["aspect"], strict=True))
        return sum(a == b for a, b in zip(keys, keys[1:], strict=False))

    assert neighbours(train) == 185
    shuffled = train_rows(methods.get("kto"), train, seed=0)
    assert neighbours(shuffled) <= 5 and sorted(shuffled["id"]) == sorted(train["id"])
    assert train_rows(methods.get("sft"), train, seed=0) is train
    result = cli("preprocess", KTO, "--preview", "1")
    assert result.exit_code == 0, result.output
    assert f"answers:       {answers['desirable']} desirable, " in result.output
    assert "(label True)" in result.output or "(label False)" in result.output


# ----------------------------------------------------------------------------- the recipe


def _problems(text: str) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe_text(text)
    return str(info.value)


def test_load_time_checks_come_from_the_schema_entry():
    base = recipe_text("kto")
    one = base.replace("per_device_batch_size: 2", "per_device_batch_size: 1")
    assert (
        "train.per_device_batch_size: loss_type kto estimates its KL term from the other "
        "answers of a batch, so per_device_batch_size (1) must be at least 2; smallest fix: "
        "per_device_batch_size: 2"
    ) in _problems(one)
    load_recipe_text(
        one.replace("max_length: 256", "max_length: 256\n  loss_type: apo_zero_unpaired")
    )
    no_gold = base.replace("    label: {easy: y_easy_gpt4}\n", "")
    assert "data.columns.label: method kto scores each answer against it" in _problems(no_gold)
    other = base.replace("answers: {easy:", "answers: {middle:")
    assert "method.answers: unknown aspect 'middle'" in _problems(other)
    assert "name at least one answer column for easy" in _problems(
        base.replace("[easy_gpt_response, easy_llama3_response]", "[]")
    )
    assert "rewards apply only to method grpo, not kto" in _problems(
        base + "rewards: [{name: format}]\n"
    )
    pairs = base.replace(
        "  length_filter: null\n",
        "  length_filter: null\n  pairs: {answers: {easy: [easy_gpt_response, easy_llama3_response]}}\n",
    )
    assert "data.pairs builds DPO pairs; remove it for method kto" in _problems(pairs)


def test_answers_for_every_aspect_built(tmp_path):
    text = recipe_text("kto").replace("  aspects: [easy]\n", "")
    text = text.replace(
        "label: {easy: y_easy_gpt4}", "label: {easy: y_easy_gpt4, difficult: y_diff_gpt4}"
    )
    with pytest.raises(UserError, match="method.answers: no answer columns for aspect"):
        job_of(text).columns  # noqa: B018


def test_compiles_to_kto_config():
    import trl

    c = compile_recipe(job_of(recipe_text("kto", lora=True)))
    assert (c.method, c.config_class, c.trainer_class) == ("kto", "trl.KTOConfig", "trl.KTOTrainer")
    kw = c.config_kwargs
    assert (kw["beta"], kw["loss_type"], kw["max_length"]) == (0.1, "kto", 256)
    assert (kw["desirable_weight"], kw["undesirable_weight"]) == (1.0, 1.0)
    config = trl.KTOConfig(**kw)
    assert config.train_sampling_strategy == "sequential"  # TRL's, which the KL term needs
    assert "max_length" in c.changed_kwargs() and "beta" not in c.changed_kwargs()


# ----------------------------------------------------------------------------- memory


def test_plan_estimates_kto_memory():
    """One sequence per row (no chosen/rejected pair), LoRA dropout off as KTOConfig runs it,
    no generation phase; a full fine-tune keeps a copy of the weights as the reference."""
    from llmscisci_cfg.train.plan import make_plan

    lora = make_plan(KTO, ("model.lora.dropout=0.05",)).memory.estimate
    s = lora.settings
    assert (s.method, s.batch, s.sequences, s.dropout_active) == ("kto", 8, 8, False)
    assert lora.get("reference") == 0 and lora.get("generation") == 0
    full = make_plan(KTO, ("model.lora=null",)).memory.estimate
    assert full.get("reference") == full.get("weights") > 0
    assert (
        "peak memory" in make_plan(KTO).as_text() and "== trl.KTOConfig" in make_plan(KTO).as_text()
    )


def test_plan_settings_are_read_off_the_compiled_job():
    """The estimate reads what TRL receives, not the recipe: change the compiled kwargs and
    only they move the estimate."""
    from llmscisci_cfg.train.memory import settings_for

    c = compile_recipe(load_job(KTO))
    assert settings_for(c).batch == 8 and settings_for(c).seq_len == 512
    other = dataclasses.replace(
        c, config_kwargs=c.config_kwargs | {"per_device_train_batch_size": 3, "max_length": 100}
    )
    assert (settings_for(other).batch, settings_for(other).seq_len) == (3, 100)


# ----------------------------------------------------------------------------- run and eval


def test_llmscisci_run_trains_kto_on_cpu(trained):
    run_dir, output = trained("kto"), trained.output("kto")
    assert "kto on builtin:tiny (cpu, 1 process(es)): 370 train, 48 test examples" in output
    rows = step_rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-4)  # policy == reference at the start
    assert all("kl" in r and "logps/chosen" in r and "logps/rejected" in r for r in rows)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["compiled"]["trainer_class"] == "trl.KTOTrainer"
    assert manifest["final"]["kind"] == "adapter"
    assert manifest["data_report"]["answers"]["desirable"] > 0  # preprocess --json's summary


def test_llmscisci_eval_evaluates_a_kto_run(cli, trained, tmp_path):
    out = tmp_path / "eval"
    args = ("--limit", "4", "--max-new-tokens", "4", "--batch-size", "4", *FREE)
    result = cli("eval", trained("kto"), "--reference", "--output-dir", out, *args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["model"] for r in rows] == ["policy"] * 4 + ["reference"] * 4
    report = json.loads((out / "report.json").read_text())
    assert report["policy"]["overall"]["n"] == 4
    text = (out / "report.md").read_text()
    assert "KTO with TRL's trl.KTOTrainer (" in text
    assert "beta 0.1, loss_type kto, desirable_weight 1.0, undesirable_weight 1.0" in text


def test_a_full_fine_tune_trains_against_a_copy_of_the_start_weights(tmp_path):
    from llmscisci_cfg.train.runner import run

    run_dir = run(str(write_recipe(tmp_path, "kto")), (), tmp_path / "run")
    rows = step_rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-4)
    assert json.loads((run_dir / "manifest.json").read_text())["final"]["kind"] == "full"


@pytest.mark.slow
@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_estimate_is_near_the_measured_peak_of_a_kto_run(lora, tmp_path, monkeypatch):
    """`plan`'s estimate against the peak of torch's tensors in a real KTO run (CPU, the
    gemma-3-shaped model of hidden 256 × 4 layers of bench/bench_memory.py, float32, batch 4):
    +4.8% with LoRA, +6.0% for a full fine-tune with its reference copy (2026-12-07)."""
    from bench import bench_memory, gpu
    from bench.tensor_peak import TensorPeak
    from llmscisci_cfg.train.runner import run

    monkeypatch.setenv("LLMSCISCI_CACHE", str(tmp_path / "cache"))
    model_dir = bench_memory.save(tmp_path / "model")
    settings = dataclasses.replace(gpu.smoke_settings(), sft_batch=4, lora_r=8)
    recipe = gpu.recipe(gpu.SHAPES["gemma3_1b"], gpu.VARIANTS["dpo_bf16"], model_dir, settings)
    recipe["method"] = {
        "name": "kto",
        "max_length": settings.sft_max_length,
        "answers": {
            a: [f"{a}_gpt_response", f"{a}_llama3_response"] for a in ("easy", "difficult")
        },
    }
    if not lora:
        del recipe["model"]["lora"]
    path = tmp_path / "kto.yaml"
    path.write_text(gpu.yaml_dump(recipe))
    with TensorPeak() as peak:
        run(str(path), (), tmp_path / "run")
    found = gpu.memory_figures(path, peak.peak_bytes / 2**30)
    assert abs(found["mem_estimate_error"]) <= 0.10, found


def test_the_dataset_cache_key_covers_the_answer_columns():
    """method.answers shapes the rows: another choice of columns is another dataset (a stale
    cache hit trained on the old rows, and hid a misspelt column)."""
    from llmscisci_cfg.data.preprocess import lookup_key

    both = load_job(KTO)
    gpt = load_job(KTO, ("method.answers.easy=[easy_gpt_response]",))
    assert lookup_key(both) != lookup_key(gpt)
    assert lookup_key(both) == lookup_key(load_job(KTO, ("train.learning_rate=1e-5",)))


def test_answers_of_one_side_only_are_refused_before_the_model_loads(cli, tmp_path, cache):
    """The sections themselves as 'answers' hold no label block: every row undesirable."""
    result = cli(
        "run", KTO, "--set", "method.answers.easy=[easy]",
        "--set", "method.answers.difficult=[difficult]", "--output-dir", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert (
        "method kto needs desirable and undesirable answers, but the training rows hold 0 "
        "desirable and 185 undesirable: none is desirable. Do method.answers name the models' "
        "answer columns (easy: easy; difficult: difficult)?" in result.output
    )
    assert "Traceback" not in result.output
