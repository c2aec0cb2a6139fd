"""`llmscisci export --merge`: a LoRA run becomes a plain model that loads offline."""

from __future__ import annotations

import json
import os

import pytest

from llmscisci_cfg.runs import rundir
from llmscisci_cfg.train.runner import run
from tests.run_helpers import write_recipe


@pytest.fixture
def lora_run(tmp_path):
    return run(
        str(write_recipe(tmp_path, "sft", lora=True, steps=1)),
        ("train.learning_rate=5e-2",),
        tmp_path / "run",
    )


def test_export_merge_round_trip(lora_run, tmp_path, cli, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmscisci_cfg.models import tiny

    out = tmp_path / "merged"
    umask = os.umask(0o022)
    try:
        result = cli("export", lora_run, "--merge", "-o", out)
    finally:
        os.umask(umask)
    assert result.exit_code == 0, result.output
    assert f"exported: {out}" in result.output
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}  # not 0600
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    merged = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert not any("lora" in name for name in merged.state_dict())
    assert tokenizer.chat_template == (lora_run / "final" / "chat_template.jinja").read_text()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Was the code available?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    base = tiny.build_tiny_model("builtin:tiny", seed=3)
    with torch.no_grad():
        adapter = PeftModel.from_pretrained(base, str(lora_run / "final")).eval()
        expected = adapter(input_ids=ids).logits
        got = merged.eval()(input_ids=ids).logits
        untrained = tiny.build_tiny_model("builtin:tiny", seed=3)(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, untrained, atol=1e-4)  # the adapter changed the model


def test_export_refuses_adapter_without_merge_and_busy_output(lora_run, cli):
    result = cli("export", lora_run)
    assert result.exit_code == 2 and "pass --merge" in result.output
    busy = lora_run / "checkpoints"
    result = cli("export", lora_run, "--merge", "-o", busy)
    assert result.exit_code == 2 and "not empty" in result.output
    result = cli("export", lora_run, "--merge")  # into the run: it joins the run's inventory
    assert result.exit_code == 0, result.output
    assert "exported/" in json.loads((lora_run / "manifest.json").read_text())["inventory"]
    assert rundir.prepare(lora_run, resume=False, overwrite=True) is True


def test_export_of_a_run_whose_base_model_is_gone_is_a_user_error(lora_run, cli, tmp_path):
    import json

    record = json.loads((lora_run / "manifest.json").read_text())
    record["final"] |= {"base_model": str(tmp_path / "moved-away"), "base_seed": None}
    (lora_run / "manifest.json").write_text(json.dumps(record))
    result = cli("export", lora_run, "--merge", "-o", tmp_path / "merged")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "final.base_model: cannot load the model" in result.output
    assert not (tmp_path / "merged").exists()


def test_export_of_lora_over_an_earlier_lora_run(lora_run, cli, tmp_path):
    """A LoRA run whose base is another LoRA run's final/ merges both adapters, in order."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmscisci_cfg.models import tiny

    recipe = write_recipe(tmp_path, "sft", lora=True, steps=1)
    recipe.write_text(recipe.read_text().replace("builtin:tiny", str(lora_run / "final")))
    second = run(str(recipe), ("train.learning_rate=5e-2",), tmp_path / "second")
    result = cli("export", second, "--merge", "-o", tmp_path / "merged")
    assert result.exit_code == 0, result.output
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        base = tiny.build_tiny_model("builtin:tiny", seed=3)
        first = PeftModel.from_pretrained(base, str(lora_run / "final")).merge_and_unload()
        only_first = first.eval()(input_ids=ids).logits
        both = PeftModel.from_pretrained(first, str(second / "final")).eval()  # wraps in place
        expected = both(input_ids=ids).logits
        got = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, only_first, atol=1e-4)  # the second adapter is in it
