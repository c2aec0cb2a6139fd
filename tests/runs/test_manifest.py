"""Manifest pieces that need no training: hashes, git, absolute paths in the resolved recipe."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from llmscisci_cfg.digest import content_sha256
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.loader import load_job, load_recipe
from llmscisci_cfg.recipe.resolve import absolute_recipe
from llmscisci_cfg.resources import root
from llmscisci_cfg.runs.manifest import git_info, resolved_yaml
from llmscisci_cfg.train.compile import compile_recipe
from tests.run_helpers import job_of, recipe_text


def test_sha256_file_is_sha256sum(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"hello\n")
    assert content_sha256(f) == hashlib.sha256(b"hello\n").hexdigest()
    with pytest.raises(UserError, match="missing: no such file"):
        content_sha256(tmp_path / "missing")


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_info_records_commit_and_dirtiness(tmp_path):
    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        )

    assert git_info(tmp_path) is None  # not a repository
    git("init", "-q")
    (tmp_path / "r.yaml").write_text("x")
    git("add", "r.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "r")
    sha = git("rev-parse", "HEAD").stdout.strip()
    assert git_info(tmp_path) == {"sha": sha, "dirty": False, "root": str(tmp_path.resolve())}
    (tmp_path / "r.yaml").write_text("y")
    assert git_info(tmp_path)["dirty"] is True


def test_resolved_recipe_has_absolute_paths_and_loads_elsewhere(tmp_path, monkeypatch):
    src = tmp_path / "project"
    src.mkdir()
    shutil.copy(root("assets") / "sample" / "reports.csv", src / "reports.csv")
    (src / "plug.py").write_text(
        "def r(completions, **kw):\n    return [0.0 for _ in completions]\n"
    )
    text = recipe_text("grpo").replace("path: builtin:sample", "path: reports.csv")
    text = text.replace("  - name: format\n", "  - name: format\n  - name: plug.py:r\n")
    (src / "recipe.yaml").write_text(text)
    job = load_job(src / "recipe.yaml")
    recipe = job.recipe
    absolute = absolute_recipe(recipe)
    assert absolute.data.source.path == str(src / "reports.csv")
    assert absolute.rewards[1].name == f"{src / 'plug.py'}:r"
    assert absolute.data.task == "builtin:repro_effort"  # built-ins stay as they are
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "recipe.resolved.yaml").write_text(resolved_yaml(job))
    monkeypatch.chdir(elsewhere)
    again = load_recipe(elsewhere / "recipe.resolved.yaml")
    assert again.data.source.path == str(src / "reports.csv")
    assert again.train == recipe.train and again.method == recipe.method


def test_grpo_eval_batch_holds_whole_groups():
    text = recipe_text("grpo").replace("num_generations: 2", "num_generations: 3")
    text = text.replace(
        "  logging_steps: 1\n",
        "  logging_steps: 1\n  gradient_accumulation_steps: 3\n  eval_steps: 1\n",
    )
    c = compile_recipe(job_of(text))
    assert c.config_kwargs["eval_strategy"] == "steps"
    assert c.config_kwargs["per_device_eval_batch_size"] == 3  # 2 would split a group of 3
    from trl import GRPOConfig

    GRPOConfig(**c.config_kwargs)  # TRL accepts it


# ----------------------------------------------------------------------------- issue 24


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_tool_commit_comes_from_the_installed_package_wherever_the_command_runs(
    tmp_path, monkeypatch
):
    """An editable install: the checkout the package is tracked in, not the current folder's
    repository; a built package: the commit setup.py embedded; neither: said explicitly."""
    import llmscisci_cfg
    from llmscisci_cfg.runs.manifest import BUILD_COMMIT, source_commit, tool_info

    package = Path(llmscisci_cfg.__file__).parent
    head = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.chdir(tmp_path)  # the command runs elsewhere
    info = tool_info()
    assert info["version"] == llmscisci_cfg.__version__
    assert info["commit"] == head and info["commit_from"].startswith("git checkout ")
    assert isinstance(info["dirty"], bool)

    copied = tmp_path / "site" / "llmscisci_cfg"  # a package outside any checkout
    copied.mkdir(parents=True)
    (copied / "__init__.py").write_text("")
    unknown = source_commit(copied)
    assert unknown["commit"] == "unknown" and unknown["commit_from"].startswith("unknown: ")
    (copied / BUILD_COMMIT).write_text(json.dumps({"commit": "abc123", "dirty": False}))
    assert source_commit(copied) == {
        "commit": "abc123",
        "dirty": False,
        "commit_from": "embedded at build time",
    }
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # an untracked package
    (copied / BUILD_COMMIT).unlink()
    assert source_commit(copied)["commit"] == "unknown"


def test_task_and_prompts_are_hashed_as_trained_with(tmp_path):
    from llmscisci_cfg.digest import text_sha256
    from llmscisci_cfg.runs.manifest import task_info

    plain = job_of(recipe_text("sft"))
    info = task_info(plain)
    task_file = root("assets") / "tasks" / "repro_effort.yaml"
    assert info["ref"] == "builtin:repro_effort" and info["file"] == str(task_file)
    assert info["sha256"] == hashlib.sha256(task_file.read_bytes()).hexdigest()
    assert info["user_prompt_sha256"] == text_sha256(plain.task.user_prompt)
    assert info["overrides"] == []
    prompt = "Decide. {{ question }} {{ categories }} <text>{{ text }}</text>"
    override = f"  task_overrides:\n    user_prompt: '{prompt}'\n"
    changed = task_info(job_of(recipe_text("sft").replace("data:\n", "data:\n" + override)))
    assert changed["sha256"] == info["sha256"]  # the same file ...
    assert changed["user_prompt_sha256"] == text_sha256(prompt)  # ... another prompt
    assert changed["system_prompt_sha256"] == info["system_prompt_sha256"]
    assert changed["overrides"] == ["user_prompt"]


def test_parent_model_by_hub_revision_or_by_weights(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from llmscisci_cfg.runs.manifest import parent_model
    from llmscisci_cfg.runs.rundir import RUN_FORMAT

    sha = "7ae557604adf67be50417f59c2c2f167def9a775"
    repo = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B-Instruct"  # the hub cache's layout
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    (repo / "snapshots" / sha / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    text = recipe_text("sft").replace("builtin:tiny", "Qwen/Qwen2.5-0.5B-Instruct")
    assert parent_model(job_of(text)) == {
        "name_or_path": "Qwen/Qwen2.5-0.5B-Instruct",
        "kind": "hub",
        "id": "Qwen/Qwen2.5-0.5B-Instruct",
        "revision": "main",
        "commit": sha,
    }
    pinned = text.replace("  dtype: float32\n", "  dtype: float32\n  revision: v2\n")
    assert parent_model(job_of(pinned))["commit"] == "unknown"  # not in the cache: said so
    final = tmp_path / "sft" / "final"
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"weights")
    (final / "training_args.bin").write_bytes(b"not weights")
    local = parent_model(job_of(recipe_text("sft").replace("builtin:tiny", str(final))))
    sha = hashlib.sha256(b"weights").hexdigest()
    assert local == {
        "name_or_path": str(final),
        "kind": "local",
        "path": str(final),
        "weights_sha256": {"model.safetensors": sha},
    }
    earlier = {
        "format": RUN_FORMAT,
        "recipe": {"sha256": "r" * 64, "resolved_sha256": "s" * 64},
        "parent_model": {
            "kind": "hub",
            "id": "Qwen/Qwen2.5-0.5B-Instruct",
            "revision": "main",
            "commit": "7ae5",
        },
    }
    (final.parent / "manifest.json").write_text(json.dumps(earlier))
    (final.parent / "recipe.resolved.yaml").write_text(recipe_text("sft"))
    chained = parent_model(job_of(recipe_text("sft").replace("builtin:tiny", str(final))))
    assert chained["kind"] == "run" and chained["weights_sha256"] == {"model.safetensors": sha}
    assert chained["run"] == {
        "dir": str(final.parent),
        "manifest": str(final.parent / "manifest.json"),
        "recipe_sha256": "r" * 64,
        "resolved_sha256": "s" * 64,
    }
    assert chained["root"] == earlier["parent_model"]
