"""Untrusted recipes: bounded YAML, regular files only, values the trainer would reject, and
``--set`` mistakes blamed on the ``--set`` (issue 11, classes 4, 6, 10, 13, 15)."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import RECIPES

QUICK = RECIPES / "quickstart" / "grpo_tiny.yaml"


def refused(result, *needles: str) -> str:
    """The output of a clean refusal: exit 2, no traceback, every needle in it."""
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out
    for needle in needles:
        assert needle in out, out
    return out


def test_alias_bomb_is_refused_quickly(cli, tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    refused(cli("validate", path), "bomb.yaml:", "values once aliases are expanded")
    assert time.perf_counter() - started < 10  # 9**9 values would take minutes and gigabytes


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: &a [*a]\n", "bad.yaml:1:7: an alias refers to a node that contains it"),
        ("x: &a {y: [*a]}\n", "recursive alias"),
        ("x: " + "[" * 70 + "]" * 70 + "\n", "nested more than 64 levels deep"),
    ],
)
def test_recursive_and_deep_yaml_is_refused(cli, tmp_path, text, needle):
    (tmp_path / "bad.yaml").write_text(text)
    refused(cli("validate", tmp_path / "bad.yaml"), needle)


def test_recursive_alias_in_a_set_value(cli):
    refused(
        cli("validate", QUICK, "--set", "name=&a [*a]"), "--set name=&a [*a]", "recursive alias"
    )


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null", "fifo", "dir"])
def test_only_regular_files_are_read(cli, tmp_path, target):
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
    if target == "dir":
        (tmp_path / "dir").mkdir()
    path = tmp_path / target if target in ("fifo", "dir") else target
    expected = "is a directory" if target == "dir" else "not a regular file"
    refused(cli("validate", path), expected)
    refused(cli("validate", QUICK, "--set", f"data.task={path}"), "data.task", expected)
    if target != "dir":
        refused(cli("validate", QUICK, "--set", f"template.file={path}"), "not a regular file")
        tiny = "model.name_or_path=builtin:tiny"  # not step 1's output, which may not exist
        result = cli("preprocess", QUICK, "--set", tiny, "--set", f"data.source.path={path}")
        refused(result, "data.source.path", "not a regular file")


def test_a_huge_recipe_file_is_refused(cli, tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("name: x\n# " + "x" * (2 << 20) + "\n")
    refused(cli("validate", path), "MiB is more than the 1 MiB read for a recipe")


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("train.seed=-1", "train.seed: Input should be greater than or equal to 0"),
        ("train.seed=100000000000000000000000000000", "less than or equal to 4294967295"),
        ("data.split.seed=-3", "data.split.seed"),
        ("train.max_steps=true", "train.max_steps: expected a number, not the boolean true"),
        ("method.num_generations=false", "expected a number, not the boolean false"),
        ("rewards.0.weight=true", "rewards.0.weight: expected a number"),
        ("train.learning_rate=.inf", "train.learning_rate: Input should be a finite number"),
        ("train.per_device_batch_size=4294967296", "less than or equal to 2147483647"),
        ("train.output_dir=runs/{nme}", "train.output_dir: unknown placeholder {nme}"),
    ],
)
def test_values_the_trainer_would_reject_fail_validate(cli, setting, needle):
    refused(cli("validate", QUICK, "--set", setting), f"--set {setting}", needle)


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("rewards[5].weight=1", "--set rewards[5].weight=1: cannot set rewards.5"),
        ("train.99999999999999999999=1", "--set train.99999999999999999999=1: train.9999"),
        ("trian.seed=3", "--set trian.seed=3: trian: unknown key (did you mean 'train'?)"),
    ],
)
def test_set_mistakes_are_blamed_on_the_set(cli, setting, needle):
    out = refused(cli("validate", QUICK, "--set", setting), needle)
    assert "grpo_tiny.yaml:" not in out  # not on a line of the recipe file


def test_bracket_indices_in_set(cli):
    result = cli("plan", QUICK, "--json", "--set", "rewards[0].weight=2")
    assert result.exit_code == 0, result.output
    assert '"reward_weights": [\n' in result.output and "2.0" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ("validate", "builtin:../../../../etc/passwd"),
            "cannot leave the package's recipes folder",
        ),
        (
            ("validate", QUICK, "--set", "data.task=builtin:../tasks/repro_effort"),
            "cannot leave the package's assets folder",
        ),
        (
            ("validate", QUICK, "--set", "model.name_or_path=builtin:huge"),
            "model.name_or_path: unknown built-in model 'builtin:huge'",
        ),
    ],
)
def test_builtin_names_stay_inside_the_package(cli, args, needle):
    refused(cli(*args), needle)


@pytest.mark.parametrize(
    ("key", "name"), [("data.task", "task.yaml"), ("template.file", "t.jinja")]
)
def test_huge_text_files_named_by_a_recipe_are_refused(cli, tmp_path, key, name):
    path = tmp_path / name
    path.write_text("# " + "x" * (2 << 20) + "\n")
    result = cli("validate", QUICK, "--set", f"{key}={path}")
    refused(result, name, f"MiB is more than the 1 MiB read for {key}")


def test_schema_to_a_place_it_cannot_write_is_exit_2(cli):
    refused(cli("schema", "-o", "/proc/llmscisci/recipe.schema.json"), "cannot write")
