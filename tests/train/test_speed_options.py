"""Speed options of a recipe: packing, padding-free batches, Liger, torch.compile, optimizers.

What each compiles to, what is refused and where, and that padding-free batches train the same
model (position ids keep the examples apart, so the loss is the padded batch's).
"""

from __future__ import annotations

import importlib.util

import pytest

from llmscisci_cfg.errors import RecipeError
from llmscisci_cfg.recipe import checks
from llmscisci_cfg.train.compile import compile_recipe
from tests.run_helpers import job_of, recipe_text, step_rows, write_recipe


def _with(method: str, method_extra: str = "", train_extra: str = "", model_extra: str = ""):
    text = recipe_text(method)
    if method_extra:
        text = text.replace(f"  name: {method}\n", f"  name: {method}\n{method_extra}", 1)
    if train_extra:
        text = text.replace("train:\n", f"train:\n{train_extra}", 1)
    if model_extra:
        text = text.replace("  dtype: float32\n", f"  dtype: float32\n{model_extra}", 1)
    return text


def test_packing_compiles_to_whole_example_packing():
    c = compile_recipe(job_of(_with("sft", "  packing: true\n")))
    assert c.config_kwargs["packing"] is True
    assert c.config_kwargs["packing_strategy"] == "bfd"  # never cuts an example
    c = compile_recipe(job_of(_with("dpo", "  padding_free: true\n")))
    assert c.config_kwargs["padding_free"] is True


def test_liger_compile_and_optimizers_compile_through():
    text = _with("sft", train_extra="  torch_compile: true\n  optim: paged_adamw_8bit\n").replace(
        "device: cpu", "device: cuda"
    )
    c = compile_recipe(job_of(text, cuda=True))
    assert c.config_kwargs["torch_compile"] is True
    assert c.config_kwargs["optim"] == "paged_adamw_8bit"
    assert c.config_kwargs["use_liger_kernel"] is False
    text = _with("grpo", train_extra="  liger_kernel: true\n").replace(
        "device: cpu", "device: cuda"
    )
    assert compile_recipe(job_of(text, cuda=True)).config_kwargs["use_liger_kernel"] is True


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (
            recipe_text("sft").replace("max_length: 256", "max_length: null\n  packing: true"),
            "method.max_length",
            "set max_length",
        ),
        (
            _with("sft", "  padding_free: true\n", model_extra="  trust_remote_code: true\n"),
            "method.padding_free",
            "remote code",
        ),
        (_with("sft", train_extra="  liger_kernel: true\n"), "train.liger_kernel", "CUDA"),
        (_with("sft", "  padding_free: true\n"), "method.padding_free", "max_length: null"),
    ],
)
def test_impossible_combinations_are_refused_at_load(text, key, words):
    with pytest.raises(RecipeError) as exc:
        job_of(text)
    assert key in str(exc.value) and words in str(exc.value)


def test_missing_packages_are_machine_problems(monkeypatch):
    job = job_of(
        _with(
            "sft",
            train_extra="  liger_kernel: true\n",
            model_extra="  attn_implementation: flash_attention_2\n",
        ).replace("device: cpu", "device: cuda"),
        cuda=True,
    )
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("liger_kernel", "flash_attn") else real(name, *a),
    )
    found = {p.key: p.message for p in checks.machine_problems(job.recipe, cuda=True)}
    assert "pip install liger-kernel" in found[("train", "liger_kernel")]
    assert "flash-attn" in found[("model", "attn_implementation")]


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_padding_free_batches_give_the_padded_loss(method, tmp_path):
    """Same weights, same first batch: the first logged loss must agree to float precision."""
    from llmscisci_cfg.train.runner import run

    losses = {}
    for padding_free in (False, True):
        path = write_recipe(tmp_path, method, steps=1)
        sets = (f"method.padding_free={str(padding_free).lower()}",)
        if method == "sft":  # padding-free SFT rows are not cut (see the refusal above)
            sets += ("method.max_length=null",)
        run_dir = run(
            str(path),
            sets,
            tmp_path / f"run_{padding_free}",
        )
        losses[padding_free] = step_rows(run_dir)[0]["loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert losses[False] > 0
