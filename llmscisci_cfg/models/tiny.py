"""The built-in tiny models: Llama-, Qwen2- and Gemma3-shaped, random weights, nothing downloaded.

Recipes name them as ``model: {name_or_path: builtin:tiny}`` (Llama-shaped), ``builtin:tiny-qwen``
or ``builtin:tiny-gemma``. Weights come from a seed; the tokenizer is the small byte-level BPE
shipped in ``llmscisci_cfg/assets/tiny_tokenizer`` (made by scripts/make_tiny_tokenizer.py).

>>> model = build_tiny_model("builtin:tiny", seed=0)           # doctest: +SKIP
>>> tokenizer = load_tiny_tokenizer()                          # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.errors import UserError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

PREFIX = "builtin:"
# name -> (transformers architecture, what it mimics)
SHAPES = {
    "tiny": ("LlamaForCausalLM", "Llama 3"),
    "tiny-qwen": ("Qwen2ForCausalLM", "Qwen2.5"),
    "tiny-gemma": ("Gemma3ForCausalLM", "Gemma 3 (text)"),
}
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, MAX_POSITIONS = 128, 2, 4, 2, 256, 2048
# The tokenizer's BOS / EOS when the tiny model is used with a given shipped template, so the
# template's own BOS and end-of-turn tokens are the ones training and generation use.
TEMPLATE_SPECIALS: dict[str, tuple[str | None, str]] = {
    "tiny": (None, "<|im_end|>"),
    "chatml": (None, "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "gemma3": ("<bos>", "<end_of_turn>"),
}
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<eos>")  # all stop generation


def is_builtin(name: str) -> bool:
    """True for ``builtin:...`` model names (known or not; `tiny_config` rejects unknown ones)."""
    return name.startswith(PREFIX)


def builtin_names() -> list[str]:
    """The built-in model names, e.g. ``['builtin:tiny', 'builtin:tiny-qwen', 'builtin:tiny-gemma']``."""
    return [PREFIX + key for key in SHAPES]


def tokenizer_dir() -> Path:
    """Directory of the shipped tiny tokenizer."""
    from llmscisci_cfg.resources import root

    return root("assets") / "tiny_tokenizer"


def load_tiny_tokenizer(template: str = "tiny") -> PreTrainedTokenizerFast:
    """The shipped tokenizer (pad ``<pad>``, left padding), with BOS/EOS set for ``template``.

    It carries the tiny chat template; `llmscisci_cfg.models.load.load_tokenizer` swaps in the
    recipe's. ``template`` is a shipped template name; others keep the tiny BOS/EOS.
    """
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir()))
    bos, eos = TEMPLATE_SPECIALS.get(template, TEMPLATE_SPECIALS["tiny"])
    tokenizer.bos_token = bos
    tokenizer.eos_token = eos
    tokenizer.pad_token = "<pad>"
    tokenizer.padding_side = "left"
    return tokenizer


def builtin_key(name: str) -> str:
    """``builtin:tiny-qwen`` -> ``tiny-qwen``; an unknown built-in name is a `UserError`."""
    key = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if key not in SHAPES:
        raise UserError(
            f"model.name_or_path: unknown built-in model {name!r}; available: {', '.join(builtin_names())}"
        )
    return key


def _special_ids() -> dict[str, Any]:
    """Vocabulary size and special-token ids, read from the shipped ``tokenizer.json`` (the
    config needs them; instantiating a tokenizer for that would be a second tokenizer load)."""
    data = json.loads((tokenizer_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    ids = {t["content"]: t["id"] for t in data["added_tokens"]}
    ids.update(data["model"]["vocab"])
    return {
        "vocab_size": max(ids.values()) + 1,
        "pad_token_id": ids["<pad>"],
        "bos_token_id": ids["<bos>"],
        "eos_token_id": [ids[t] for t in END_OF_TURN],
    }


def tiny_config(name: str) -> PretrainedConfig:
    """The transformers config of a built-in model: hidden 128, 2 layers, the tokenizer's vocab."""
    key = builtin_key(name)
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

    common = dict(
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        **_special_ids(),
    )
    if key == "tiny":
        return LlamaConfig(**common)
    if key == "tiny-qwen":
        return Qwen2Config(**common)
    head_dim = HIDDEN // HEADS
    return Gemma3TextConfig(
        **common,
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        sliding_window=512,
        layer_types=["sliding_attention", "full_attention"],
    )


def build_tiny_model(
    name: str = "builtin:tiny",
    seed: int = 0,
    dtype: str | Any = "float32",
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """A built-in model with random weights drawn from ``seed`` (same seed, same weights).

    ``dtype`` is a torch dtype or its name; ``"auto"`` means float32.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_config(name)
    if attn_implementation:
        config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):  # seeds the init without moving the caller's RNG
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    return model.to(_torch_dtype(dtype))


def _torch_dtype(dtype: Any):
    import torch

    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise UserError(f"model.dtype: unknown dtype {dtype!r}")
        return getattr(torch, dtype)
    return dtype


def save_tiny(name: str, directory: str | Path, seed: int = 0) -> Path:
    """Save a built-in model and the shipped tokenizer as a local model directory; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    build_tiny_model(name, seed).save_pretrained(out)
    load_tiny_tokenizer().save_pretrained(out)
    return out
