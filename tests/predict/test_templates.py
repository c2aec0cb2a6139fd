"""The training template follows the model: `predict` on a run directory renders with the chat
template the run was trained with (saved in its final/), says so when the recipe names another,
uses the recipe's only when told (`template.override`), and records the one it used."""

from __future__ import annotations

import json

from llmscisci_cfg.digest import text_sha256
from llmscisci_cfg.models import chat

LABEL = "builtin:quickstart/label_tiny"


def _predict(cli, tmp_path, run, *sets):
    out = tmp_path / "out.csv"
    args = (
        "--set",
        f"model.name_or_path={run}",
        "--limit",
        "2",
        "--set",
        "generation.max_new_tokens=32",
    )
    result = cli("predict", LABEL, "--output", out, *args, *sets)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out.csv.report.json").read_text())
    return result, report["generation"]["chat_template"]


def test_predict_on_a_run_uses_its_training_template(cli, tmp_path, trained):
    run = trained("sft")
    saved = (run / "final" / "chat_template.jinja").read_text(encoding="utf-8")
    result, used = _predict(cli, tmp_path, run)
    assert used == {"name": "run", "sha256": text_sha256(saved)}
    assert "warning" not in result.output


def test_a_recipe_naming_another_template_is_warned_and_can_override(cli, tmp_path, trained):
    run = trained("sft")
    saved = text_sha256((run / "final" / "chat_template.jinja").read_text(encoding="utf-8"))
    chatml = text_sha256(chat.shipped_template("chatml"))
    result, used = _predict(cli, tmp_path / "a", run, "--set", "template.name=chatml")
    assert used["sha256"] == saved  # the run's, with a warning naming both
    assert "was saved with its own chat template" in result.output
    assert saved[:12] in result.output and chatml[:12] in result.output
    _, forced = _predict(
        cli, tmp_path / "b", run, "--set", "template.name=chatml", "--set", "template.override=true"
    )
    assert forced == {"name": "chatml", "sha256": chatml}
