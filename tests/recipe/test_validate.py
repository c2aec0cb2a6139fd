"""`llmscisci validate`: shipped recipes pass; every class of bad input fails cleanly (exit 2)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import RECIPES, all_recipes

GOOD = textwrap.dedent(
    """\
    name: t
    model:
      name_or_path: builtin:tiny
    data:
      source: {path: builtin:sample}
      columns:
        label: {easy: y_easy_gpt4, difficult: y_diff_gpt4}
    method:
      name: grpo
      num_generations: 4
    rewards:
      - name: format
    train:
      per_device_batch_size: 4
      learning_rate: 1e-5
    launch:
      device: cpu
    """
)


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_clean_failure(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, f"{needle!r} not in:\n{result.output}"


@pytest.mark.parametrize("recipe", all_recipes(), ids=lambda p: str(p.relative_to(RECIPES)))
def test_shipped_recipe_validates(cli, recipe):
    result = cli("validate", recipe)
    assert result.exit_code == 0, result.output
    assert f"ok: {recipe}" in result.output


def test_good_recipe_parses_exponent_as_float(tmp_path):
    from llmscisci_cfg.recipe.loader import load_recipe

    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.train.learning_rate == pytest.approx(1e-5)
    assert recipe.method.name == "grpo" and recipe.method.num_generations == 4
    assert recipe.source_dir == tmp_path.resolve()


@pytest.mark.parametrize(
    "old, new, needles",
    [
        (
            "name: t\n",
            "name: t\nnmae: x\n",
            ["r.yaml:2:1: nmae: unknown key (did you mean 'name'?)"],
        ),
        (
            "  learning_rate: 1e-5",
            "  learnig_rate: 1e-5",
            ["r.yaml:15:3: train.learnig_rate: unknown key (did you mean 'learning_rate'?)"],
        ),
        (
            "  per_device_batch_size: 4",
            "  per_device_batch_size: many",
            ["r.yaml:14:26: train.per_device_batch_size:", "'many'"],
        ),
        ("  device: cpu", "  device: tpu", ["r.yaml:17:11: launch.device:", "'tpu'"]),
        (
            "  name: grpo",
            "  name: ppo",
            ["method.name: unknown method 'ppo'; choose one of sft, dpo, grpo"],
        ),
        (
            "  learning_rate: 1e-5",
            "  learning_rate: -1e-5",
            ["train.learning_rate: Input should be greater than 0"],
        ),
        (
            "model:\n  name_or_path: builtin:tiny\n",
            "",
            ["r.yaml:1:1: model: required key is missing"],
        ),
        (
            "  num_generations: 4",
            "  num_generatons: 4",
            ["r.yaml:10:3: method.num_generatons: unknown key (did you mean 'num_generations'?)"],
        ),
        (  # the misspelt tag: both the missing name and the key that was meant to be it
            "  name: grpo",
            "  naem: grpo",
            [
                "method.name: required key is missing",
                "r.yaml:9:3: method.naem: unknown key (did you mean 'name'?)",
            ],
        ),
        (
            "  name: grpo\n  num_generations: 4",
            "  name: gpro\n  num_generatons: 4",
            [
                "method.name: unknown method 'gpro'",
                "r.yaml:10:3: method.num_generatons: unknown key (did you mean 'num_generations'?)",
            ],
        ),
    ],
    ids=[
        "top-typo",
        "nested-typo",
        "wrong-type",
        "bad-enum",
        "bad-method",
        "negative-lr",
        "missing-section",
        "method-typo",
        "method-name-typo",
        "bad-method-and-typo",
    ],
)
def test_bad_values_are_located(cli, tmp_path, old, new, needles):
    assert old in GOOD
    result = cli("validate", write(tmp_path, GOOD.replace(old, new, 1)))
    assert_clean_failure(result, *needles)


def test_all_errors_reported_at_once(cli, tmp_path):
    text = GOOD.replace("name: t\n", "name: t\nnmae: x\n").replace("device: cpu", "device: tpu")
    text = text.replace("learning_rate: 1e-5", "learnig_rate: 1e-5")
    result = cli("validate", write(tmp_path, text))
    assert_clean_failure(result, "nmae", "learnig_rate", "launch.device")
    assert len([line for line in result.output.splitlines() if "r.yaml:" in line]) == 3


@pytest.mark.parametrize(
    "text, needles",
    [
        ("name: a\nname: b\n", ["r.yaml:2:1: duplicate key 'name' (first defined at line 1)"]),
        (
            "name: !!python/object/apply:os.system ['touch PWNED']\n",
            ["r.yaml:1:7:", "tag", "not allowed"],
        ),
        ("", ["r.yaml:1:1: the file is empty"]),
        ("# only a comment\n", ["r.yaml:1:1: the file is empty"]),
        ("- a\n- b\n", ["r.yaml:1:1: the recipe must be a YAML mapping", "not a list"]),
        ("name: t\n\tmodel: x\n", ["r.yaml:2:1: YAML syntax error", "tabs"]),
        ("name: [a, b\n", ["r.yaml:", "YAML syntax error"]),
    ],
    ids=[
        "duplicate-key",
        "python-tag",
        "empty",
        "comment-only",
        "list-root",
        "tab",
        "unclosed-bracket",
    ],
)
def test_bad_yaml(cli, tmp_path, monkeypatch, text, needles):
    monkeypatch.chdir(tmp_path)
    result = cli("validate", write(tmp_path, text))
    assert_clean_failure(result, *needles)
    assert not (tmp_path / "PWNED").exists()


def test_non_utf8(cli, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: t\ndescription: caf\xe9\n")
    assert_clean_failure(cli("validate", path), "r.yaml:2:17: not valid UTF-8 (byte 0xe9)")


def test_missing_file_and_directory(cli, tmp_path):
    assert_clean_failure(cli("validate", tmp_path / "nope.yaml"), "nope.yaml: no such file")
    assert_clean_failure(cli("validate", tmp_path), "is a directory")


def test_unknown_builtin_recipe_lists_available(cli):
    assert_clean_failure(
        cli("validate", "builtin:nope"), "no such built-in recipe", "quickstart/sft_tiny.yaml"
    )
    assert_clean_failure(
        cli("validate", "builtin:quickstart/sft_tyni"),
        "(did you mean builtin:quickstart/sft_tiny.yaml?)",
    )


def test_the_flagship_recipe_is_where_the_readme_says():
    """`llmscisci run recipes/grpo_gemma.yaml` (the README's headline) is GRPO on Gemma 3 1B for
    the reproducibility-effort task, and it is the only copy of that recipe."""
    from llmscisci_cfg.recipe.loader import load_recipe

    readme = (RECIPES.parent / "README.md").read_text(encoding="utf-8")
    assert "llmscisci run recipes/grpo_gemma.yaml" in readme
    recipe = load_recipe(RECIPES / "grpo_gemma.yaml")
    assert (recipe.method.name, recipe.model.name_or_path) == ("grpo", "google/gemma-3-1b-it")
    assert recipe.data.task == "builtin:repro_effort"
    gemma_grpo = [
        p
        for p in all_recipes()
        if "gemma-3" in p.read_text(encoding="utf-8") and "name: grpo" in p.read_text("utf-8")
    ]
    assert gemma_grpo == [RECIPES / "grpo_gemma.yaml"]


@pytest.mark.parametrize(
    ("command", "ref", "suggestion"),
    [
        ("validate", "recipes/grpo_gemma3.yaml", "(did you mean builtin:grpo_gemma?)"),
        ("run", "recipes/repro_effort/grpo_gemma3.yaml", "(did you mean builtin:grpo_gemma?)"),
        ("plan", "quickstart/sft_tny.yaml", "(did you mean builtin:quickstart/sft_tiny?)"),
        ("validate", "zzz.yaml", "; shipped recipes: builtin:"),
    ],
)
def test_a_missing_recipe_names_the_nearest_shipped_ones(cli, tmp_path, command, ref, suggestion):
    missing = str(tmp_path / ref)
    assert_clean_failure(cli(command, missing), f"{missing}: no such file (a recipe)", suggestion)


@pytest.mark.parametrize("key", ["data.source.path", "data.traces.path"])
@pytest.mark.parametrize(
    "ref", ["builtin:nope", "builtin:../../../etc/passwd", "builtin:sample.csv"]
)
def test_validate_refuses_unknown_builtin_data(cli, tmp_path, key, ref):
    """The data stage refused these; `validate` said ok."""
    result = cli("validate", write(tmp_path, GOOD), "--set", f"{key}={ref}")
    assert_clean_failure(
        result, f"{key}: {ref}: no such built-in data", "available: builtin:sample"
    )


def test_validate_suggests_the_builtin_data_meant(cli, tmp_path):
    text = GOOD.replace("{path: builtin:sample}", "{path: builtin:sampel}")
    assert_clean_failure(
        cli("validate", write(tmp_path, text)),
        "r.yaml:5:18: data.source.path: builtin:sampel: no such built-in data "
        "(did you mean builtin:sample?)",
    )


def test_a_builtin_name_is_refused_where_only_a_path_is_read(cli):
    result = cli(
        "validate",
        RECIPES / "repro_effort" / "label_few_shot.yaml",
        "--set",
        "method.pool=builtin:sample",
    )
    assert_clean_failure(result, "method.pool: builtin:sample: method.pool takes a table path")


@pytest.mark.parametrize(
    "override, needles",
    [
        ("train.learning_rate", ["--set train.learning_rate: expected KEY=VALUE"]),
        (
            "train.learnig_rate=1",
            [
                "--set train.learnig_rate=1: train.learnig_rate: unknown key (did you mean 'learning_rate'?)"
            ],
        ),
        ("train.seed=abc", ["--set train.seed=abc: train.seed:", "'abc'"]),
        ("name.x=1", ["--set name.x=1: name is a value, not a section"]),
        ("rewards.5.weight=1", ["--set rewards.5.weight=1: cannot set rewards.5"]),
        ("train..seed=1", ["empty part"]),
    ],
)
def test_bad_set(cli, tmp_path, override, needles):
    assert_clean_failure(cli("validate", write(tmp_path, GOOD), "--set", override), *needles)


def test_set_is_typed_by_schema(tmp_path):
    from llmscisci_cfg.recipe.loader import load_recipe

    recipe = load_recipe(
        write(tmp_path, GOOD),
        [
            "train.learning_rate=3e-4",
            "rewards.0.weight=2",
            "model.lora.r=4",
            "train.report_to=[tensorboard]",
        ],
    )
    assert recipe.train.learning_rate == pytest.approx(3e-4)
    assert recipe.rewards[0].weight == 2.0
    assert recipe.model.lora.r == 4 and recipe.model.lora.alpha == 16
    assert recipe.train.report_to == ["tensorboard"]


@pytest.mark.parametrize(
    "old, new, needles",
    [
        (
            "  per_device_batch_size: 4",
            "  per_device_batch_size: 3",
            [
                "method.num_generations: num_generations (4) must divide per_device_batch_size × gradient_accumulation_steps (3); smallest fix: per_device_batch_size: 4"
            ],
        ),
        (
            "  per_device_batch_size: 4",
            "  per_device_batch_size: 6",
            ["(6); smallest fix: gradient_accumulation_steps: 2"],
        ),
        (
            "  name: grpo\n  num_generations: 4\n",
            "  name: sft\n",
            ["rewards: rewards apply only to method grpo, not sft"],
        ),
        ("rewards:\n  - name: format\n", "", ["rewards: method grpo needs at least one reward"]),
        (
            "  name: grpo\n  num_generations: 4\n",
            "  name: dpo\n",
            [
                "data.columns.chosen: method dpo needs a chosen answer column",
                "data.columns.rejected: method dpo needs a rejected",
            ],
        ),
        (
            "  name_or_path: builtin:tiny\n",
            "  name_or_path: builtin:tiny\n  quantization: {bits: 4}\n  lora: {r: 4}\n",
            [
                "model.quantization: bitsandbytes quantization on launch.device: cpu is refused",
                "allow_cpu: true",
            ],
        ),
        (
            "  name_or_path: builtin:tiny\n",
            "  name_or_path: builtin:tiny\n  quantization: {bits: 4, allow_cpu: true}\n",
            [
                "model.quantization: quantized weights cannot be trained directly; add a model.lora section"
            ],
        ),
        ("  - name: format\n", "  - name: format\n    weight: 0\n", ["every reward weight is 0"]),
        (
            "  - name: format\n",
            "  - name: format\n  - name: format\n",
            ["rewards.1.name: 'format' is listed twice"],
        ),
        (
            "  learning_rate: 1e-5\n",
            "  learning_rate: 1e-5\n  warmup_ratio: 1.5\n",
            ["train.warmup_ratio: Input should be less than 1"],
        ),
        (
            "  num_generations: 4\n",
            "  num_generations: 1\n",
            ["method.num_generations: Input should be greater than or equal to 2"],
        ),
        (
            "  device: cpu\n",
            "  device: cpu\n  num_processes: 0\n",
            ["launch.num_processes: Input should be greater than or equal to 1"],
        ),
    ],
    ids=[
        "divisible-batch",
        "divisible-accum",
        "rewards-without-grpo",
        "grpo-without-rewards",
        "dpo-pairs",
        "4bit-on-cpu",
        "quant-without-lora",
        "zero-weights",
        "duplicate-reward",
        "probability-bound",
        "generations-bound",
        "processes-bound",
    ],
)
def test_cross_field_rules(cli, tmp_path, old, new, needles):
    assert old in GOOD
    assert_clean_failure(cli("validate", write(tmp_path, GOOD.replace(old, new, 1))), *needles)


def test_num_processes_counts_in_divisibility(cli, tmp_path):
    text = GOOD.replace("  device: cpu", "  device: cpu\n  num_processes: 3")
    text = text.replace("per_device_batch_size: 4", "per_device_batch_size: 2")
    assert_clean_failure(cli("validate", write(tmp_path, text)), "× num_processes (6)")


def test_machine_checks_with_here(cli, tmp_path, monkeypatch):
    from llmscisci_cfg.recipe import checks

    monkeypatch.setattr(checks, "cuda_present", lambda: False)
    gemma = RECIPES / "grpo_gemma.yaml"
    assert cli("validate", gemma).exit_code == 0
    assert_clean_failure(cli("validate", "--here", gemma), "no CUDA device is visible")


def test_validate_many_reports_each(cli, tmp_path):
    bad = write(tmp_path, "name: t\n", "bad.yaml")
    good = write(tmp_path, GOOD, "good.yaml")
    result = cli("validate", good, bad)
    assert_clean_failure(
        result,
        f"ok: {good}",
        "bad.yaml:1:1: model: required key is missing",
        "1 of 2 recipes valid",
    )


def test_unknown_template_name(cli, tmp_path):
    text = GOOD.replace("launch:\n", "template:\n  name: lama3\nlaunch:\n")
    assert_clean_failure(
        cli("validate", write(tmp_path, text)),
        "template.name: unknown template 'lama3'; choose one of llama3, gemma3, chatml, tiny, tokenizer (did you mean 'llama3'?)",
    )


def test_unknown_aspect_and_bad_task(cli, tmp_path):
    text = GOOD.replace(
        "label: {easy: y_easy_gpt4, difficult: y_diff_gpt4}", "label: {easy: a, hard: b}"
    )
    assert_clean_failure(
        cli("validate", write(tmp_path, text)),
        "data.columns.label: unknown aspect 'hard'; the task builtin:repro_effort has easy, difficult",
    )
    text = GOOD.replace(
        "  source: {path: builtin:sample}",
        "  task: missing_task.yaml\n  source: {path: builtin:sample}",
    )
    assert_clean_failure(
        cli("validate", write(tmp_path, text)),
        "data.task: cannot load the task:",
        "missing_task.yaml",
    )


def test_gold_reward_needs_label_column(cli, tmp_path):
    dropped = "  columns:\n    label: {easy: y_easy_gpt4, difficult: y_diff_gpt4}\n"
    assert dropped in GOOD
    text = GOOD.replace(dropped, "").replace(
        "  - name: format\n", "  - name: format\n  - name: hamming\n"
    )
    result = cli("validate", write(tmp_path, text))
    assert_clean_failure(
        result, "rewards.1.name: hamming reads the gold label; set data.columns.label"
    )
    assert "rewards.0" not in result.output


def test_set_paths_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    """Paths in the recipe file are recipe-relative; paths typed in --set are relative to the
    folder the command runs in (a built-in recipe's folder is inside the package)."""
    from llmscisci_cfg.recipe.loader import load_job

    here = tmp_path / "work"
    (here / "data").mkdir(parents=True)
    (here / "data" / "mine.csv").write_text("doi,easy\n")
    (here / "plug.py").write_text(
        "def r(completions, **kw):\n    return [0.0] * len(completions)\n"
    )
    monkeypatch.chdir(here)
    job = load_job(
        "builtin:quickstart/grpo_tiny",
        [
            "data.source.path=data/mine.csv",
            "rewards=[{name: format}, {name: plug.py:r}]",
            "data.split={seed: 1}",
        ],
    )
    assert job.recipe.data.source.path == str(here / "data" / "mine.csv")
    assert job.recipe.rewards[1].name == f"{here / 'plug.py'}:r"
    untouched = load_job("builtin:quickstart/grpo_tiny")
    assert untouched.recipe.data.source.path == "builtin:sample"
