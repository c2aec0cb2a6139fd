"""Compile: every recipe field reaches TRL under a name TRL 1.16 knows, with the right value."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from llmscisci_cfg.errors import RecipeError, UserError
from llmscisci_cfg.recipe.loader import load_recipe, load_recipe_text
from llmscisci_cfg.recipe.resolve import resolve
from llmscisci_cfg.train.compile import TRL_DEFAULTS, compile_recipe
from tests.conftest import RECIPES, REPO, all_recipes
from tests.run_helpers import job_of, recipe_text


def _config_class(name: str):
    import trl

    return getattr(trl, name.split(".")[1])


def _defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@pytest.mark.parametrize("config_class", sorted(TRL_DEFAULTS))
def test_defaults_table_matches_trl(config_class):
    """`plan` hides TRL defaults; the table it uses must be TRL 1.16's own."""
    real = _defaults(_config_class(config_class))
    for key, value in TRL_DEFAULTS[config_class].items():
        assert key in real, f"{config_class} has no field {key}"
        assert real[key] == value, (
            f"{config_class}.{key}: TRL default {real[key]!r}, table {value!r}"
        )


VARIANTS = [
    ("sft", False, ""),
    ("sft", True, ""),
    ("dpo", True, ""),
    ("dpo", False, ""),
    ("grpo", False, ""),
    ("grpo", True, ""),
    ("kto", False, ""),
    ("kto", True, ""),
]


@pytest.mark.parametrize("method,lora,extra", VARIANTS)
def test_kwargs_instantiate_trl_configs_on_cpu(tmp_path, method, lora, extra):
    compiled = compile_recipe(
        job_of(recipe_text(method, lora=lora) + extra, run_dir=tmp_path / "run")
    )
    cls = _config_class(compiled.config_class)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(compiled.config_kwargs) <= fields
    config = cls(**compiled.config_kwargs)
    assert config.use_cpu is True and config.bf16 is False and config.fp16 is False
    assert config.output_dir == str(tmp_path / "run" / "checkpoints")
    assert config.per_device_train_batch_size == 2
    assert config.learning_rate == 1e-3
    assert config.max_steps == 2
    assert config.seed == 3 and config.data_seed == 3
    assert config.activation_checkpointing is False  # TRL's default is on
    assert config.save_strategy == "steps" and config.save_steps == 1
    assert config.eval_strategy == "no"
    assert config.report_to == [] or config.report_to == "none"
    if lora:
        from peft import LoraConfig

        lc = LoraConfig(**compiled.lora_kwargs)
        assert (lc.r, lc.lora_alpha, lc.lora_dropout) == (4, 8, 0.0)
    else:
        assert compiled.lora_kwargs is None
    assert compiled.model_kwargs == {
        "dtype": "float32",
        "attn_implementation": None,
        "trust_remote_code": False,
        "revision": None,
    }


def test_sft_fields():
    c = compile_recipe(job_of(recipe_text("sft")))
    kw = c.config_kwargs
    assert (kw["max_length"], kw["assistant_only_loss"], kw["packing"]) == (256, True, False)
    assert c.config_class == "trl.SFTConfig" and c.trainer_class == "trl.SFTTrainer"


def test_dpo_fields():
    text = recipe_text("dpo").replace("beta: 0.1", "beta: 0.3\n  loss_type: ipo")
    kw = compile_recipe(job_of(text)).config_kwargs
    assert (kw["beta"], kw["loss_type"], kw["max_length"]) == (0.3, ["ipo"], 256)


def test_grpo_fields_and_generation_batch(tmp_path):
    text = recipe_text("grpo").replace(
        "max_completion_length: 8",
        "max_completion_length: 8\n  scale_rewards: none\n  loss_type: dr_grpo\n  temperature: 0.7",
    )
    c = compile_recipe(job_of(text, run_dir=tmp_path))
    kw = c.config_kwargs
    assert kw["remove_unused_columns"] is False
    assert (kw["num_generations"], kw["max_completion_length"], kw["temperature"]) == (2, 8, 0.7)
    assert (kw["scale_rewards"], kw["loss_type"]) == ("none", "dr_grpo")
    assert c.reward_names == ["format", "stepwise_label"] and c.reward_weights == [1.0, 0.5]
    assert kw["reward_weights"] == [1.0, 0.5]
    config = _config_class(c.config_class)(**kw)
    assert config.generation_batch_size == c.derived["generation_batch_size"] == 2
    assert config.steps_per_generation == 1 and config.scale_rewards == "none"


def test_unknown_grpo_loss_type_is_rejected_at_load():
    """TRL 1.16 accepts any loss_type string; a recipe must not."""
    text = recipe_text("grpo").replace(
        "max_completion_length: 8", "max_completion_length: 8\n  loss_type: grpoo"
    )
    with pytest.raises(RecipeError, match="loss_type"):
        load_recipe_text(text)


def test_cuda_compiles_bf16_and_bnb():
    text = recipe_text("sft", lora=True).replace(
        "  dtype: float32\n", "  dtype: auto\n  quantization: {bits: 4}\n"
    )
    text = text.replace("device: cpu", "device: auto")
    c = compile_recipe(job_of(text, cuda=True))
    assert (
        c.device == "cuda"
        and c.config_kwargs["bf16"] is True
        and c.config_kwargs["use_cpu"] is False
    )
    assert c.model_kwargs["dtype"] == "bfloat16"
    assert c.bnb_kwargs == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bfloat16",
    }
    from transformers import BitsAndBytesConfig

    from llmscisci_cfg.models.load import make_bnb

    bnb = make_bnb(c.bnb_kwargs)
    assert isinstance(bnb, BitsAndBytesConfig) and bnb.bnb_4bit_use_double_quant is True


def test_changed_kwargs_hides_defaults_but_keeps_key_fields():
    c = compile_recipe(job_of(recipe_text("sft")))
    changed = c.changed_kwargs()
    assert "seed" in changed and "output_dir" in changed  # key fields, even when default
    assert "weight_decay" not in changed  # 0.0 is TRL's default
    assert changed["use_cpu"] is True


@pytest.mark.parametrize("recipe", all_recipes(), ids=lambda p: str(p.relative_to(RECIPES)))
def test_shipped_recipes_compile(recipe):
    r = load_recipe(recipe)
    if r.method.name == "predict":  # trains nothing; tests/predict covers it
        with pytest.raises(UserError, match="trains nothing"):
            compile_recipe(resolve(r, cuda=False))
        return
    for cuda in (False, True):
        c = compile_recipe(resolve(r, cuda=cuda))
        cls = _config_class(c.config_class)
        assert set(c.config_kwargs) <= {f.name for f in dataclasses.fields(cls)}
        if c.device == "cpu":  # a CUDA config cannot be instantiated on this CPU machine
            cls(**c.config_kwargs)


def test_compile_and_plan_stay_light():
    code = (
        "import sys\n"
        "from llmscisci_cfg.train.plan import make_plan\n"
        "make_plan('builtin:quickstart/grpo_tiny').as_text()\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'accelerate',"
        " 'bitsandbytes', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"
