"""The shape of a decoder-only model, which memory depends on, read without any ML library.

`shape_for` finds a `ModelShape`: ``builtin:tiny*`` from `llmscisci_cfg.models.tiny`, a local
folder's ``config.json`` (a LoRA folder's base too), a hub id's ``config.json`` already in the
Hugging Face cache, else `KNOWN_SHAPES` (the hub models of the shipped recipes). Never goes to
the network. `llmscisci_cfg.train.memory` turns a shape into a peak-memory estimate.

>>> shape_for("google/gemma-3-1b-it").params
999885952
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The linear layers of a Llama-style decoder layer (what LoRA's all-linear adapts).
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on in a decoder-only model (a Llama-style block: attention with
    q/k/v/o projections, a gated MLP with gate/up/down, RMSNorms).

    ``model_type`` picks the norm layout: ``gemma3*`` has four norms per layer plus q/k norms;
    the others two. ``attention_bias``: q/k/v biases (Qwen2).
    """

    name: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    attention_bias: bool = False
    source: str = ""
    full_layers: int | None = None  # layers with full (global) attention; None: all of them

    @property
    def gemma(self) -> bool:
        return self.model_type.startswith("gemma3")

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of a decoder layer."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params(self) -> int:
        """Weights of every decoder-layer linear (what bitsandbytes quantizes)."""
        return self.layers * sum(i * o for i, o in self.linear_dims().values())

    @property
    def embedding_params(self) -> int:
        """Input embedding, plus the LM head when it is not tied (never quantized)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def small_params(self) -> int:
        """Norm weights and q/k/v biases: per layer 2 norms (Gemma 3: 4, plus q/k norms of
        ``head_dim``), and the final norm."""
        norms = 4 * self.hidden + 2 * self.head_dim if self.gemma else 2 * self.hidden
        bias = self.q_dim + 2 * self.kv_dim if self.attention_bias else 0
        return self.layers * (norms + bias) + self.hidden

    @property
    def params(self) -> int:
        """Total parameters, tied weights counted once (``sum(p.numel() for p in
        model.parameters())``); e.g. gemma-3-1b 999,885,952."""
        return self.embedding_params + self.linear_params + self.small_params


# Published config.json values of the shipped recipes' hub models (parameter totals from the
# formula above agree with transformers' count of the same config; see the tests).
KNOWN_SHAPES: dict[str, ModelShape] = {
    s.name: s
    for s in (
        ModelShape(
            "google/gemma-3-1b-it", "gemma3_text", hidden=1152, layers=26, heads=4, kv_heads=1,
            head_dim=256, intermediate=6912, vocab=262144, tied_embeddings=True, full_layers=4,
            source="config.json of google/gemma-3-1b-it (as copied in bench/gpu.py GEMMA3_1B)",
        ),
        ModelShape(
            "Qwen/Qwen2.5-1.5B-Instruct", "qwen2", hidden=1536, layers=28, heads=12, kv_heads=2,
            head_dim=128, intermediate=8960, vocab=151936, tied_embeddings=True,
            attention_bias=True,
            source="config.json of Qwen/Qwen2.5-1.5B-Instruct (as copied in bench/gpu.py QWEN25_1_5B)",
        ),
        ModelShape(
            "meta-llama/Llama-3.2-1B-Instruct", "llama", hidden=2048, layers=16, heads=32,
            kv_heads=8, head_dim=64, intermediate=8192, vocab=128256, tied_embeddings=True,
            source="config.json of meta-llama/Llama-3.2-1B-Instruct (hub, transformers 4.45)",
        ),
    )
}  # fmt: skip

_TIED_DEFAULT = {"gemma3": True, "gemma3_text": True}  # transformers' defaults when absent


def shape_from_config(config: Mapping[str, Any], name: str, source: str = "") -> ModelShape:
    """A `ModelShape` from config.json data (Gemma 3 multimodal configs: their ``text_config``).

    A missing required key raises `KeyError`.
    """
    outer = config
    model_type = str(config.get("model_type", ""))
    if isinstance(config.get("text_config"), Mapping):
        config = config["text_config"]
        model_type = str(config.get("model_type", model_type))
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    tied = config.get(
        "tie_word_embeddings",
        outer.get("tie_word_embeddings", _TIED_DEFAULT.get(model_type, False)),
    )
    layers = int(config["num_hidden_layers"])
    kinds = config.get("layer_types")
    pattern = config.get("sliding_window_pattern")
    if isinstance(kinds, list) and kinds:
        full = sum(k == "full_attention" for k in kinds)
    elif model_type.startswith("gemma3") and isinstance(pattern, int) and pattern > 0:
        full = layers // pattern  # transformers: every pattern-th layer is global
    else:
        full = None
    return ModelShape(
        name=name,
        model_type=model_type,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        intermediate=int(config["intermediate_size"]),
        vocab=int(config["vocab_size"]),
        tied_embeddings=bool(tied),
        attention_bias=model_type == "qwen2" or bool(config.get("attention_bias", False)),
        source=source,
        full_layers=full if full and full < layers else None,
    )


def read_config(path: Path, name: str) -> ModelShape | None:
    """The shape in a config.json file; None when it is unreadable or lacks a size."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return shape_from_config(data, name, source=str(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tiny_shape(name: str) -> ModelShape:
    """A built-in tiny model's shape from `llmscisci_cfg.models.tiny`'s constants (light)."""
    from llmscisci_cfg.models import tiny

    key = tiny.builtin_key(name)
    model_type = {"tiny": "llama", "tiny-qwen": "qwen2", "tiny-gemma": "gemma3_text"}[key]
    return ModelShape(
        name=tiny.PREFIX + key,
        model_type=model_type,
        hidden=tiny.HIDDEN,
        layers=tiny.LAYERS,
        heads=tiny.HEADS,
        kv_heads=tiny.KV_HEADS,
        head_dim=tiny.HIDDEN // tiny.HEADS,
        intermediate=tiny.FFN,
        vocab=tiny._special_ids()["vocab_size"],
        tied_embeddings=True,
        attention_bias=model_type == "qwen2",
        source="llmscisci_cfg/models/tiny.py",
        full_layers=tiny.LAYERS // 2 if key == "tiny-gemma" else None,  # sliding, then full
    )


def shape_for(
    name_or_path: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> ModelShape | None:
    """The shape of ``model.name_or_path``, or None when nothing here describes it.

    Looks, in order, at: ``builtin:`` names; a local folder's config.json (a LoRA folder:
    its ``base_model_name_or_path``); the hub id's config.json in the Hugging Face cache
    (``cache_dir``, default the usual one); `KNOWN_SHAPES`. Never goes to the network.
    """
    from llmscisci_cfg.models import tiny

    if tiny.is_builtin(name_or_path):
        return tiny_shape(name_or_path)
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        if (folder / "config.json").is_file():
            return read_config(folder / "config.json", name_or_path)
        adapter = folder / "adapter_config.json"
        try:
            base = json.loads(adapter.read_text(encoding="utf-8"))["base_model_name_or_path"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return shape_for(str(base), cache_dir=cache_dir) if base else None
    cached = _hub_cache_config(name_or_path, revision, cache_dir)
    if cached is not None:
        return read_config(cached, name_or_path)
    return KNOWN_SHAPES.get(name_or_path)


def _hub_cache_config(repo_id: str, revision: str | None, cache_dir) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(
            repo_id, "config.json", cache_dir=cache_dir, revision=revision
        )
    except Exception:  # an id that is not a valid repo id, an unreadable cache
        return None
    return Path(found) if isinstance(found, str) else None
