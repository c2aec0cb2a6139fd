"""Model shapes (`llmscisci_cfg.models.shapes`): the known hub models are their configs and
count parameters as transformers does; local folders, LoRA folders and the hub cache are read;
sliding-window layers are counted."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench.gpu import GEMMA3_1B, QWEN25_1_5B
from llmscisci_cfg.models.shapes import KNOWN_SHAPES, shape_for, shape_from_config

GEMMA = KNOWN_SHAPES["google/gemma-3-1b-it"]
QWEN = KNOWN_SHAPES["Qwen/Qwen2.5-1.5B-Instruct"]
LLAMA = KNOWN_SHAPES["meta-llama/Llama-3.2-1B-Instruct"]
# config.json of meta-llama/Llama-3.2-1B-Instruct, the keys the shape reads
LLAMA_CONFIG = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_hidden_layers": 16,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
}
CONFIGS = {GEMMA.name: GEMMA3_1B, QWEN.name: QWEN25_1_5B, LLAMA.name: LLAMA_CONFIG}


def _same(a, b) -> bool:
    return replace(a, name="", source="") == replace(b, name="", source="")


@pytest.mark.parametrize("name", sorted(KNOWN_SHAPES))
def test_known_shapes_are_their_configs_and_count_like_transformers(name):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(CONFIGS[name])
    config.pop("architectures", None)
    assert _same(shape_from_config(config, name), KNOWN_SHAPES[name])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            AutoConfig.for_model(config.pop("model_type"), **config)
        )
    assert KNOWN_SHAPES[name].params == sum(p.numel() for p in model.parameters())


def test_shape_from_local_folders_and_the_hub_cache(tmp_path):
    gemma_mm = {"model_type": "gemma3", "text_config": {**GEMMA3_1B}}  # multimodal layout
    for name, config in (("gemma", gemma_mm), ("qwen", QWEN25_1_5B), ("llama", LLAMA_CONFIG)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    assert _same(shape_for(str(tmp_path / "gemma")), GEMMA)
    assert _same(shape_for(str(tmp_path / "qwen")), QWEN)
    assert _same(shape_for(str(tmp_path / "llama")), LLAMA)
    adapter = tmp_path / "final"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "qwen")})
    )
    assert _same(shape_for(str(adapter)), QWEN)
    # a hub id found in the Hugging Face cache wins over the table
    repo = tmp_path / "hub" / "models--google--gemma-3-1b-it"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    small = {**GEMMA3_1B, "num_hidden_layers": 2}
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(small))
    cached = shape_for("google/gemma-3-1b-it", cache_dir=tmp_path / "hub")
    assert cached.layers == 2 and cached.source.endswith("config.json")
    assert shape_for("google/gemma-3-1b-it", cache_dir=tmp_path / "empty").layers == 26
    assert shape_for("someone/unknown-model", cache_dir=tmp_path / "hub") is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    assert shape_for(str(tmp_path / "broken")) is None


def test_sliding_window_layers_are_read_from_the_config():
    assert shape_from_config(GEMMA3_1B, "g").full_layers == 26 // 6 == GEMMA.full_layers
    listed = {**GEMMA3_1B, "layer_types": ["sliding_attention"] * 20 + ["full_attention"] * 6}
    assert shape_from_config(listed, "g").full_layers == 6
    assert shape_from_config(QWEN25_1_5B, "q").full_layers is None  # every layer is full
    assert shape_for("builtin:tiny-gemma").full_layers == 1
