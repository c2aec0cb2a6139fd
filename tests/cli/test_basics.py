"""CLI contract: --help of every command, light imports, the JSON schema in sync, packaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.conftest import REPO

HEAVY = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "matplotlib",
)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def _all_commands():
    from llmscisci_cfg.cli import main

    return [()] + list(_commands(main))


@pytest.mark.parametrize("command", _all_commands(), ids=lambda c: " ".join(c) or "llmscisci")
def test_help(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output and "--help" in result.output


def test_contract_commands_exist():
    names = {" ".join(c) for c in _all_commands()}
    for expected in (
        "validate",
        "plan",
        "preprocess",
        "run",
        "eval",
        "rewards list",
        "rewards test",
        "schema",
        "export",
        "reproduce",
    ):
        assert expected in names


def _imported_modules(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False
    )
    return {line.split(".")[0] for line in out.stdout.splitlines()}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["validate", "recipes/grpo_gemma.yaml", "recipes/quickstart/sft_tiny.yaml"],
        ["plan", "recipes/grpo_gemma.yaml"],
        ["schema"],
    ],
    ids=["help", "validate", "plan", "schema"],
)
def test_light_commands_import_no_ml_library(args):
    code = (
        "from llmscisci_cfg.cli import main\n"
        f"try:\n    main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    loaded = _imported_modules(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "llmscisci_cfg" in loaded


def test_schema_file_in_sync(cli):
    shipped = json.loads((REPO / "schemas" / "recipe.schema.json").read_text(encoding="utf-8"))
    result = cli("schema")
    assert result.exit_code == 0
    assert json.loads(result.output) == shipped, (
        "run: llmscisci schema -o schemas/recipe.schema.json"
    )


def test_schema_to_file(cli, tmp_path):
    out = tmp_path / "s.json"
    assert cli("schema", "-o", out).exit_code == 0
    schema = json.loads(out.read_text())
    assert schema["additionalProperties"] is False
    assert "learning_rate" in schema["$defs"]["TrainSpec"]["properties"]
    assert schema["$defs"]["TrainSpec"]["properties"]["learning_rate"]["description"]


def test_every_schema_field_is_documented():
    from llmscisci_cfg.recipe.schema import json_schema

    for name, definition in json_schema()["$defs"].items():
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_recipes_point_editors_at_the_schema():
    for path in sorted((REPO / "recipes").rglob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("=", 1)[1]).resolve()
        assert target == (REPO / "schemas" / "recipe.schema.json").resolve(), path


def test_recipes_open_with_a_run_command():
    for path in sorted((REPO / "recipes").rglob("*.yaml")):
        head = path.read_text(encoding="utf-8").split("\nversion:", 1)[0]
        assert "# Run:" in head and ("llmscisci run" in head or "llmscisci predict" in head), path
        assert "# Needs:" in head, path


def test_installed_package_loads_builtin_recipe(tmp_path):
    """Build a wheel, install it outside the source tree, validate built-in recipes from elsewhere."""
    wheel_dir, site, elsewhere = tmp_path / "wheel", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheel_dir, REPO], check=True
    )
    wheel = next(wheel_dir.glob("*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import llmscisci_cfg, llmscisci_cfg.resources as r; print(llmscisci_cfg.__file__); print(r.root('recipes'))"
    package, recipes = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert package.startswith(str(site)) and recipes.startswith(str(site))
    assert Path(recipes, "quickstart", "sft_tiny.yaml").is_file()
    assert Path(recipes).parent.joinpath("templates", "llama3.jinja").is_file()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmscisci_cfg",
            "validate",
            "builtin:quickstart/sft_tiny",
            "builtin:grpo_gemma",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: builtin:quickstart/sft_tiny" in out.stdout
    # the source commit setup.py embedded, which run manifests record (no checkout here)
    probe = "import json; from llmscisci_cfg.runs.manifest import tool_info; print(json.dumps(tool_info()))"
    tool = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True
        ).stdout
    )
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode == 0:
        assert tool["commit"] == head.stdout.strip(), tool
        assert tool["commit_from"] == "embedded at build time"
    else:  # built without git: said so, not null
        assert tool["commit"] == "unknown" and tool["commit_from"].startswith("unknown: ")


def test_ctrl_c_in_any_command_is_exit_130(cli, tmp_path, monkeypatch):
    """Not click's "Aborted!" with exit 1 (which says: a bug)."""
    from llmscisci_cfg.train import reproduce

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce, "reproduce_run", stopped)
    result = cli("reproduce", tmp_path)
    assert result.exit_code == 130 and "interrupted" in result.output
