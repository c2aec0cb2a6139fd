"""The model card `final/README.md` (`llmscisci_cfg.runs.card`), written from a manifest."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from llmscisci_cfg.runs.card import card_text, write_card

DATA_SHA = "cb37" + "0" * 60
RECIPE_SHA = "b2b3" + "1" * 60

MANIFEST = {
    "status": "completed",
    "command": "llmscisci run builtin:quickstart/grpo_tiny --output-dir runs/g",
    "recipe": {
        "ref": "builtin:quickstart/grpo_tiny",
        "file": "/x/recipes/quickstart/grpo_tiny.yaml",
        "sha256": RECIPE_SHA,
        "overrides": ["train.learning_rate=1e-4"],
        "resolved_sha256": "e3dd" + "2" * 60,
        "resolved": {"name": "quickstart_grpo", "description": "Tiny GRPO | on the sample."},
    },
    "versions": {"python": "3.11.7", "trl": "1.16.0", "bitsandbytes": None},
    "git": {"sha": "565df12", "dirty": True},
    "data": {
        "source": {"path": "builtin:sample", "file": "/x/reports.csv", "sha256": DATA_SHA},
    },
    "rewards": [
        {"name": "format", "label": "format", "weight": 1.0},
        {"name": "hamming", "label": "hamming", "weight": 0.5},
    ],
    "seed": 0,
    "device": "cpu",
    "num_processes": 1,
    "compiled": {"method": "grpo"},
    "final": {"kind": "full", "base_model": "builtin:tiny", "base_seed": 0},
    "end_time": "2026-11-26T14:16:47+00:00",
    "data_report": {"splits": {"train": 185, "test": 48}, "dropped": {"empty_text": 7}},
    "train_seconds": 30.123,
}


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _rows(text: str) -> dict[str, str]:
    """The Training table as {key: value}."""
    rows = [line for line in text.splitlines() if line.startswith("| ") and line != "| | |"]
    return {r.split(" | ")[0][2:]: r.split(" | ", 1)[1][:-2] for r in rows}


def test_card_front_matter_names_base_library_and_method(tmp_path):
    text = card_text(tmp_path / "g", MANIFEST)
    assert _front_matter(text) == {
        "base_model": "builtin:tiny",
        "library_name": "transformers",
        "tags": ["llmscisci", "grpo"],
    }
    assert "\n# quickstart_grpo\n" in text
    assert "[None]" not in text


def test_card_training_table_carries_the_provenance(tmp_path):
    rows = _rows(card_text(tmp_path / "g", MANIFEST))
    assert rows["base model"] == "`builtin:tiny`"
    assert rows["method"] == "GRPO"
    assert rows["recipe"] == "`builtin:quickstart/grpo_tiny`"
    assert rows["recipe sha256"] == f"`{RECIPE_SHA}`"
    assert rows["overrides"] == "`--set train.learning_rate=1e-4`"
    assert rows["data"] == "`builtin:sample` (/x/reports.csv)"
    assert rows["data sha256"] == f"`{DATA_SHA}`"
    assert rows["examples"] == "185 train, 48 test (7 dropped)"
    assert rows["rewards"] == "format ×1, hamming ×0.5"
    assert rows["train seconds"] == "30.1"
    assert rows["git"] == "`565df12` (uncommitted changes)"
    assert "traces" not in rows


def test_card_gives_the_exact_command_and_versions(tmp_path):
    text = card_text(tmp_path / "g", MANIFEST)
    assert f"```bash\n{MANIFEST['command']}\n" in text
    assert "python 3.11.7, trl 1.16.0\n" in text  # a missing library is left out
    assert f"llmscisci export {tmp_path / 'g'}\n" in text


def test_adapter_card_is_a_peft_card(tmp_path):
    manifest = copy.deepcopy(MANIFEST)
    manifest["final"] = {"kind": "adapter", "base_model": "Qwen/Qwen2.5-0.5B-Instruct"}
    text = card_text(tmp_path / "g", manifest)
    assert _front_matter(text)["library_name"] == "peft"
    assert "a LoRA adapter over `Qwen/Qwen2.5-0.5B-Instruct`" in text
    assert f"llmscisci export {tmp_path / 'g'} --merge\n" in text


def test_table_cells_cannot_break_the_table(tmp_path):
    manifest = copy.deepcopy(MANIFEST)
    manifest["data"]["source"]["file"] = "/x/a|b\nc.csv"
    assert _rows(card_text(tmp_path, manifest))["data"] == "`builtin:sample` (/x/a\\|b c.csv)"


def test_sparse_manifest_still_gives_a_card(tmp_path):
    text = card_text(tmp_path / "old_run", {"final": {"base_model": "m"}})
    assert _front_matter(text)["base_model"] == "m"
    assert "\n# old_run\n" in text and "| recipe sha256 | - |" in text


def test_write_card_replaces_trls_draft_and_takes_an_eval_summary(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    (final / "README.md").write_text("This model is a fine-tuned version of [None](...)")
    path = write_card(tmp_path, MANIFEST)
    assert path == final / "README.md"
    first = path.read_text()
    assert "[None]" not in first and "## Evaluation" not in first
    write_card(
        tmp_path, MANIFEST, eval_summary="| model | micro_f1 |\n|---|---|\n| policy | 0.5 |\n"
    )
    again = Path(path).read_text()
    assert again.startswith(first) and again.endswith(
        "## Evaluation\n\n| model | micro_f1 |\n|---|---|\n| policy | 0.5 |\n"
    )


# ----------------------------------------------------------------------------- issue 24

HUB = {
    "kind": "hub",
    "id": "google/gemma-3-1b-it",
    "revision": "main",
    "commit": "dcc83ea841ab6100d6b47a070329e1ba4cf78752",
}
PROVENANCE = {
    "tool": {"name": "llmscisci_cfg", "version": "0.1.0", "commit": "a6d1590", "dirty": False},
    "task": {
        "ref": "builtin:repro_effort",
        "file": "/x/repro_effort.yaml",
        "sha256": "7a5c" + "3" * 60,
        "overrides": ["user_prompt"],
        "system_prompt_sha256": "e887" + "4" * 60,
        "user_prompt_sha256": "1c66" + "5" * 60,
    },
    "template": {"name": "gemma3", "file": None, "sha256": "27ea" + "6" * 60},
    "data_report": {
        "splits": {"train": 185, "test": 48},
        "dropped": {"empty_text": 7, "bad_label": 0},
        "cleaning": {
            "easy": {
                "sections": 233,
                "changed": 12,
                "chars_in": 9,
                "hyphens_joined": 5,
                "cut_chars": 0,
            }
        },
        "length": {
            "strategy": "truncate",
            "splits": {"train": {"easy": {"truncated": 3}}, "test": {"easy": {"truncated": 0}}},
        },
    },
}


def test_card_names_a_hub_base_by_id_and_revision(tmp_path):
    manifest = copy.deepcopy(MANIFEST) | PROVENANCE | {"parent_model": HUB}
    manifest["final"]["base_model"] = "/home/me/models/gemma"  # what the loader read
    text = card_text(tmp_path / "g", manifest)
    assert _front_matter(text)["base_model"] == "google/gemma-3-1b-it"
    rows = _rows(text)
    assert rows["base model"] == (
        "`google/gemma-3-1b-it` (revision `main`, commit `dcc83ea841ab6100d6b47a070329e1ba4cf78752`)"
    )
    assert "/home/me" not in text


def test_card_names_local_weights_by_sha256_and_the_path_only_as_a_note(tmp_path):
    parent = {
        "kind": "run",
        "name_or_path": "runs/sft/final",
        "path": "/x/runs/sft/final",
        "weights_sha256": {"model.safetensors": "0b23" + "7" * 60},
        "run": {"dir": "/x/runs/sft", "recipe_sha256": "42bc" + "8" * 60},
        "root": HUB,
    }
    manifest = copy.deepcopy(MANIFEST) | PROVENANCE | {"parent_model": parent}
    text = card_text(tmp_path / "g", manifest)
    front = _front_matter(text)
    assert front["base_model"] == "google/gemma-3-1b-it"  # the chain's root, never a path
    rows = _rows(text)
    assert rows["base model `model.safetensors` sha256"] == f"`0b23{'7' * 60}`"
    assert rows["base model's recipe sha256"] == f"`42bc{'8' * 60}`"
    assert rows["base model's chain starts at"].startswith("`google/gemma-3-1b-it` (revision")
    assert rows["base model folder"] == "`/x/runs/sft/final` (a local path: a note only)"
    local = {k: v for k, v in parent.items() if k not in ("run", "root")} | {"kind": "local"}
    text = card_text(tmp_path / "g", copy.deepcopy(MANIFEST) | {"parent_model": local})
    assert "base_model" not in _front_matter(text)
    assert "fine-tune of a local model" in text


def test_card_lists_prompts_template_tool_and_preprocessing(tmp_path):
    rows = _rows(card_text(tmp_path / "g", copy.deepcopy(MANIFEST) | PROVENANCE))
    assert rows["task"] == "`builtin:repro_effort` (/x/repro_effort.yaml)"
    assert rows["task sha256"] == f"`7a5c{'3' * 60}`"
    assert rows["task overrides"] == "user_prompt"
    assert rows["system prompt sha256"] == f"`e887{'4' * 60}`"
    assert rows["user prompt sha256"] == f"`1c66{'5' * 60}`"
    assert rows["chat template (gemma3) sha256"] == f"`27ea{'6' * 60}`"
    assert rows["llmscisci"] == "0.1.0, commit `a6d1590`"
    assert rows["dropped"] == "empty_text 7"
    assert rows["cleaning (easy)"] == "12 of 233 sections changed (hyphens_joined 5)"
    assert rows["length filter (truncate)"] == "train easy: truncated 3"
