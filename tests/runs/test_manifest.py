"""Manifest pieces that need no training: hashes, git, absolute paths in the resolved recipe."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

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
