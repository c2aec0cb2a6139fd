"""Generation and training speed on a GPU: ``python -m bench.gpu`` (needs CUDA; ``--cpu-smoke``
checks it on CPU). bench/README.md lists the jobs and every figure.

Randomly initialised models of the published ``google/gemma-3-1b-it`` and
``Qwen/Qwen2.5-1.5B-Instruct`` shapes are built from their config.json values (nothing is
downloaded) and saved to a temporary directory, so bitsandbytes quantizes them at load time as
it would a hub checkpoint. The ``gen`` job times the generation engine against plain
``model.generate``; every other job (`VARIANTS`) trains through ``llmscisci run`` itself
(`llmscisci_cfg.train.runner.run` on a recipe written to a temp dir) on ``builtin:sample``.
The shipped tiny tokenizer stands in for the real one (throughput does not depend on which
ids are fed); the embedding keeps the real vocabulary, so the lm_head costs what it really costs.

Measured per model and job, over the steps after ``--warmup-steps``:

- training tokens/s: TRL's ``num_tokens`` (non-pad prompt + completion tokens, from
  ``metrics.jsonl``) over the wall time between the end of the last warm-up step and the end
  of the last step. For GRPO the time spent in ``generate()`` is taken out;
  ``grpo_step_tokens_per_s`` keeps it in.
- generation tokens/s (GRPO): tokens decoded by ``generate()`` (batch x new positions, so
  rows that already hit EOS count until the batch finishes) over the time spent in it.
- peak memory: ``torch.cuda.max_memory_allocated`` over the whole run (load included), in GiB
  (``--cpu-smoke``: the peak of torch's CPU tensors, `bench.tensor_peak`).
- MFU = 6 x N x training tokens/s / device bf16 peak, where N = weights of every linear layer
  of the forward pass, lm_head included (embedding lookups excluded; LoRA and attention
  score FLOPs ignored). 6N is the usual fwd (2N) + bwd (4N) convention; with frozen 4-bit
  base weights the backward skips the weight gradients, so executed matmul FLOPs are nearer
  4N, and nf4 dequantisation is not counted. The peak comes from `PEAK_TFLOPS` by
  ``torch.cuda.get_device_name`` (dense bf16 spec-sheet figures) or ``--peak-tflops``.

Outputs: ``results_gpu.json`` (flat keys) and the ``## GPU`` section at the end of
``RESULTS.md``, both in ``--out-dir`` (default ``bench/``). `python -m bench` keeps that
section when it regenerates the CPU table.

Without CUDA it exits 2, unless ``--cpu-smoke``: the same code path on CPU with the tiny
built-in sizes, float32, no quantization, 2 steps each, written to a temp dir.

On the lent machine (tool ``device``), whose image lacks trl, datasets, bitsandbytes (and
pydantic, dill, multiprocess) and has transformers 5.17: once, here, in the repo root::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \\
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \\
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \\
      transformers==5.23.0 trl==1.16.0 datasets==5.2.0 bitsandbytes==0.50.2 peft==0.21.2 \\
      dill==0.4.1 multiprocess==0.70.19 pydantic==2.14.4 pydantic-core==2.50.5 \\
      annotated-types==0.8.0 typing-inspection==0.4.5 liger-kernel==0.8.5

(about 64 MB, just under the 64 MiB a call may carry with the working tree; bitsandbytes needs
manylinux_2_24 and ships its CUDA 13 library). Then one ``run`` with ``carry: [".whl"]`` and,
as its command::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \\
    python3 -m pip install -q --no-deps --no-build-isolation -e . ; set -o pipefail; \\
    PYTHONUNBUFFERED=1 python3 -m bench.gpu --models gemma3_1b --out-dir $OUT 2>&1 | tee $OUT/log

The default jobs on one model take longer than one 10-minute call: pick them with ``--jobs``
(bench/README.md gives the list and what the 2026-11-26 H200 call ran in 470 s). datasets 5.2
wants pyarrow >= 24 and fsspec <= 2026.9.0 from the image; if an import fails there,
``python3 -m pip show pyarrow fsspec`` says which wheel to carry too. Back here, with the
returned files::

    python -m bench.gpu --render FILES_AT/results_gpu.json [SECOND/results_gpu.json]

merges them into ``bench/results_gpu.json`` and rewrites the ``## GPU`` section of
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_JSON = "results_gpu.json"
RESULTS_MD = "RESULTS.md"
GPU_HEADING = "## GPU"

# config.json of google/gemma-3-1b-it as published (text model, Gemma3ForCausalLM)
GEMMA3_1B = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": None,
    "bos_token_id": 2,
    "eos_token_id": [1, 106],
    "final_logit_softcapping": None,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 1152,
    "initializer_range": 0.02,
    "intermediate_size": 6912,
    "max_position_embeddings": 32768,
    "num_attention_heads": 4,
    "num_hidden_layers": 26,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000.0,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
    "tie_word_embeddings": True,
    "vocab_size": 262144,
}
# config.json of Qwen/Qwen2.5-1.5B-Instruct as published
QWEN25_1_5B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 1536,
    "initializer_range": 0.02,
    "intermediate_size": 8960,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}


@dataclass(frozen=True)
class Shape:
    """A model shape to benchmark: its published config and the llmscisci family/template."""

    key: str
    title: str
    config: dict[str, Any]
    family: str
    template: str


SHAPES = {
    "gemma3_1b": Shape("gemma3_1b", "gemma-3-1b-it shape", GEMMA3_1B, "gemma3", "gemma3"),
    "qwen25_1_5b": Shape(
        "qwen25_1_5b", "Qwen2.5-1.5B-Instruct shape", QWEN25_1_5B, "qwen2", "chatml"
    ),
}
METHODS = ("sft", "grpo", "dpo")


@dataclass(frozen=True)
class Variant:
    """One training job of the benchmark: a method and what its recipe changes.

    ``quantize`` None follows `Settings.quantize` (the baseline's QLoRA); False trains LoRA on
    bf16 weights. ``method``/``train``/``generation``/``lora``: recipe keys merged into those
    sections.
    """

    key: str
    method: str
    title: str
    quantize: bool | None = None
    method_keys: dict[str, Any] = field(default_factory=dict)
    train_keys: dict[str, Any] = field(default_factory=dict)
    generation_keys: dict[str, Any] = field(default_factory=dict)
    lora_keys: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None  # a package the variant needs (skipped without it)


VARIANTS = {
    v.key: v
    for v in (
        Variant("sft", "sft", "SFT QLoRA (baseline settings)"),
        Variant("sft_bf16", "sft", "SFT LoRA, bf16 weights", quantize=False),
        Variant(
            "sft_bf16_pf",
            "sft",
            "SFT LoRA bf16, padding-free",
            quantize=False,
            method_keys={"padding_free": True, "max_length": None},
        ),
        Variant(
            "sft_bf16_liger",
            "sft",
            "SFT LoRA bf16, padding-free + Liger",
            quantize=False,
            method_keys={"padding_free": True, "max_length": None},
            train_keys={"liger_kernel": True},
            needs="liger_kernel",
        ),
        Variant(
            "sft_bf16_liger_compile",
            "sft",
            "SFT LoRA bf16, padding-free + Liger + torch.compile",
            quantize=False,
            method_keys={"padding_free": True, "max_length": None},
            train_keys={"liger_kernel": True, "torch_compile": True},
            needs="liger_kernel",
        ),
        # Packed rows: whole examples filled into max_length-token rows (16 × 1024 tokens per
        # step instead of 16 × ~300), the lever Axolotl and torchtune use for throughput.
        Variant(
            "sft_bf16_packed",
            "sft",
            "SFT LoRA bf16, packed rows",
            quantize=False,
            method_keys={"packing": True},
        ),
        Variant(
            "sft_bf16_packed_liger",
            "sft",
            "SFT LoRA bf16, packed rows + Liger",
            quantize=False,
            method_keys={"packing": True},
            train_keys={"liger_kernel": True},
            needs="liger_kernel",
        ),
        Variant(
            "sft_bf16_packed_liger_compile",
            "sft",
            "SFT LoRA bf16, packed rows + Liger + torch.compile",
            quantize=False,
            method_keys={"packing": True},
            train_keys={"liger_kernel": True, "torch_compile": True},
            needs="liger_kernel",
        ),
        Variant(
            "sft_packed_liger",
            "sft",
            "SFT QLoRA, packed rows + Liger",
            method_keys={"packing": True},
            train_keys={"liger_kernel": True},
            needs="liger_kernel",
        ),
        # The memory estimate's LoRA-input term at dropout 0 (inputs shared by q/k/v and by
        # gate/up) has one GPU figure, DPO's, 25% high: this checks it on SFT.
        Variant(
            "sft_bf16_nodrop",
            "sft",
            "SFT LoRA bf16, LoRA dropout 0",
            quantize=False,
            lora_keys={"dropout": 0.0},
        ),
        Variant("grpo", "grpo", "GRPO QLoRA (baseline settings)"),
        Variant(
            "grpo_bf16_trl",
            "grpo",
            "GRPO LoRA bf16, TRL's generate",
            quantize=False,
            generation_keys={"compile": "off"},
        ),
        Variant("grpo_bf16", "grpo", "GRPO LoRA bf16, engine rollouts (compiled)", quantize=False),
        Variant(
            "grpo_bf16_merged",
            "grpo",
            "GRPO LoRA bf16, engine rollouts from a merged copy",
            quantize=False,
            generation_keys={"rollout_weights": "merged"},
        ),
        Variant(
            "grpo_merged",
            "grpo",
            "GRPO QLoRA, engine rollouts from a merged bf16 copy",
            generation_keys={"rollout_weights": "merged"},
        ),
        Variant(
            "grpo_bf16_cb",
            "grpo",
            "GRPO LoRA bf16, TRL continuous batching",
            quantize=False,
            generation_keys={"continuous_batching": True},
        ),
        Variant("dpo", "dpo", "DPO QLoRA"),
        Variant("dpo_bf16", "dpo", "DPO LoRA, bf16 weights", quantize=False),
    )
}
DEFAULT_JOBS = (
    "gen,grpo_bf16,grpo_bf16_merged,grpo_merged,grpo_bf16_trl,sft,sft_bf16,sft_bf16_pf,dpo_bf16,"
    "grpo"
)

# Dense bf16 tensor-core peaks (TFLOP/s, spec sheets, no sparsity); first substring match wins.
PEAK_TFLOPS = (
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.4),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
)


@dataclass(frozen=True)
class Settings:
    """How each job trains; `gpu_settings` and `smoke_settings` are the two presets."""

    smoke: bool
    quantize: bool
    warmup_steps: int
    sft_steps: int
    grpo_steps: int
    sft_batch: int = 16
    sft_max_length: int = 1024
    grpo_batch: int = 16
    num_generations: int = 8
    max_completion_length: int = 256
    lora_r: int = 16

    @property
    def device(self) -> str:
        return "cpu" if self.smoke else "cuda"

    def describe(self) -> str:
        weights = "4-bit nf4 + double quant, bf16" if self.quantize else "float32, no quantization"
        return (
            f"{weights}, LoRA r {self.lora_r} on all linear layers, sdpa attention, "
            "builtin:sample data with the shipped tiny tokenizer; "
            f"SFT batch {self.sft_batch} (max_length {self.sft_max_length}), GRPO batch "
            f"{self.grpo_batch} ({self.num_generations} generations of "
            f"{self.max_completion_length} tokens); {self.warmup_steps} warm-up step(s), "
            f"then {self.sft_steps - self.warmup_steps} SFT / "
            f"{self.grpo_steps - self.warmup_steps} GRPO timed steps"
        )


def gpu_settings(warmup: int = 2, sft_steps: int = 12, grpo_steps: int = 5) -> Settings:
    return Settings(False, True, warmup, sft_steps, grpo_steps)


def smoke_settings(quantize: bool = False) -> Settings:
    """Tiny CPU run; ``quantize`` adds 4-bit weights through bitsandbytes' CPU backend."""
    return Settings(
        True, quantize, 1, 2, 2, sft_batch=2, sft_max_length=256, grpo_batch=4, num_generations=2,
        max_completion_length=8, lora_r=4,
    )  # fmt: skip


# ----------------------------------------------------------------------------- models


def model_config(shape: Shape, smoke: bool, sizes: dict[str, int] | None = None):
    """The transformers config of ``shape``, with the tiny tokenizer's special ids.

    ``smoke``: the built-in tiny sizes (hidden 128, 2 layers) and a vocab a little larger
    than the tokenizer's, so the "embedding bigger than the tokenizer" path still runs;
    ``sizes``: config values set over those (e.g. ``hidden_size``, ``num_hidden_layers``).
    """
    from transformers import AutoConfig

    from llmscisci_cfg.models import tiny

    values = dict(shape.config)
    tokenizer = tiny.load_tiny_tokenizer(shape.template)
    ids = tokenizer.convert_tokens_to_ids
    values |= {
        "pad_token_id": ids("<pad>"),
        "bos_token_id": ids("<bos>"),
        "eos_token_id": [ids(t) for t in tiny.END_OF_TURN],
    }
    if smoke:
        values |= {
            "hidden_size": tiny.HIDDEN,
            "intermediate_size": tiny.FFN,
            "num_hidden_layers": tiny.LAYERS,
            "num_attention_heads": tiny.HEADS,
            "num_key_value_heads": tiny.KV_HEADS,
            "max_position_embeddings": tiny.MAX_POSITIONS,
            "vocab_size": len(tokenizer) + 256,
        }
        if "head_dim" in values:
            values |= {"head_dim": tiny.HIDDEN // tiny.HEADS, "sliding_window_pattern": 2}
    values |= sizes or {}
    values.pop("architectures")
    return AutoConfig.for_model(values.pop("model_type"), **values)


def forward_params(model) -> int:
    """Weights of every linear layer of a forward pass (lm_head included, even when tied)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def save_model(
    shape: Shape, directory: Path, smoke: bool, sizes: dict[str, int] | None = None
) -> dict[str, int]:
    """Build ``shape`` with random weights (seed 0), save it and the tokenizer to ``directory``
    (``sizes``: see `model_config`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from llmscisci_cfg.models import tiny

    config = model_config(shape, smoke, sizes)
    device = "cpu" if smoke or not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if smoke else torch.bfloat16
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(directory)
    tiny.load_tiny_tokenizer(shape.template).save_pretrained(directory)
    sizes = {
        "forward_params": forward_params(model),
        "total_params": sum(p.numel() for p in model.parameters()),
    }
    del model
    _free_memory()
    return sizes


# ----------------------------------------------------------------------------- recipes


def recipe(shape: Shape, v: Variant, model_dir: Path, s: Settings) -> dict[str, Any]:
    """The recipe (as YAML data) that trains ``shape`` as variant ``v`` through llmscisci."""
    quantize = s.quantize if v.quantize is None else v.quantize
    model: dict[str, Any] = {
        "name_or_path": str(model_dir),
        "family": shape.family,
        "dtype": "float32" if s.smoke else "bfloat16",
        "attn_implementation": "sdpa",
        "lora": {"r": s.lora_r, "alpha": 2 * s.lora_r, "dropout": 0.05} | v.lora_keys,
    }
    if quantize:
        model["quantization"] = {
            "bits": 4,
            "quant_type": "nf4",
            "double_quant": True,
            "compute_dtype": "bfloat16",
            "allow_cpu": s.smoke,
        }
    steps = {"sft": s.sft_steps, "grpo": s.grpo_steps, "dpo": s.sft_steps}[v.method]
    data: dict[str, Any] = {
        "source": {"path": "builtin:sample"},
        "columns": {"id": "doi", "label": {"easy": "y_easy_gpt4", "difficult": "y_diff_gpt4"}},
        "length_filter": None,
    }
    out: dict[str, Any] = {
        "version": 1,
        "name": f"bench_gpu_{shape.key}_{v.key}",
        "model": model,
        "data": data,
        "train": {
            "per_device_batch_size": s.grpo_batch if v.method == "grpo" else s.sft_batch,
            "learning_rate": 1e-4,
            "max_steps": steps,
            "lr_scheduler": "constant",
            "logging_steps": 1,
            "save_steps": steps + 1,  # no checkpoint inside the timed steps
            "seed": 0,
        }
        | v.train_keys,
        "launch": {"device": s.device},
    }
    if v.generation_keys:
        out["generation"] = dict(v.generation_keys)
    if v.method == "sft":
        data["traces"] = {"path": "builtin:sample_traces", "missing": "empty"}
        out["method"] = {"name": "sft", "max_length": s.sft_max_length}
    elif v.method == "dpo":
        data["columns"] |= {
            "chosen": {"easy": "easy_gpt_response", "difficult": "difficult_gpt_response"},
            "rejected": {"easy": "easy_llama3_response", "difficult": "difficult_llama3_response"},
        }
        out["method"] = {"name": "dpo", "beta": 0.1, "max_length": s.sft_max_length}
    else:
        out["method"] = {
            "name": "grpo",
            "num_generations": s.num_generations,
            "max_completion_length": s.max_completion_length,
            "beta": 0.0,
            "loss_type": "dapo",
        }
        out["rewards"] = [{"name": "format"}, {"name": "stepwise_label"}, {"name": "hamming"}]
    out["method"] |= v.method_keys
    return out


# ----------------------------------------------------------------------------- probes


@dataclass
class Generation:
    start: float
    seconds: float
    tokens: int


@dataclass
class Probe:
    """Wall-clock marks of one training run: step ends and every ``generate()`` call."""

    step_ends: dict[int, float] = field(default_factory=dict)
    generations: list[Generation] = field(default_factory=list)
    trainable_params: int = 0


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _step_timer(probe: Probe):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            _sync()
            probe.step_ends[state.global_step] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            probe.step_ends[state.global_step] = time.perf_counter()

    return StepTimer()


@contextlib.contextmanager
def instrumented():
    """Time steps and ``generate()`` of the trainer that `llmscisci_cfg.train.runner.run` builds.

    Wraps `llmscisci_cfg.train.build.build_trainer` (which the runner looks up at call time) to add
    a step-timer callback, and ``GenerationMixin.generate`` to time decoding; both are
    restored on exit.
    """
    from transformers.generation.utils import GenerationMixin

    import llmscisci_cfg.train.build as build

    probe = Probe()
    real_build, real_generate = build.build_trainer, GenerationMixin.generate

    def build_trainer(job, compiled, tokenizer, callbacks=()):
        built = real_build(job, compiled, tokenizer, [*callbacks, _step_timer(probe)])
        params = built.trainer.model.parameters()
        probe.trainable_params = sum(p.numel() for p in params if p.requires_grad)
        return built

    def generate(self, *args, **kwargs):
        prompt = kwargs.get("input_ids", args[0] if args else None)
        _sync()
        start = time.perf_counter()
        out = real_generate(self, *args, **kwargs)
        _sync()
        seqs = getattr(out, "sequences", out)
        new = seqs.shape[1] - (prompt.shape[1] if prompt is not None else 0)
        probe.generations.append(
            Generation(start, time.perf_counter() - start, seqs.shape[0] * new)
        )
        return out

    build.build_trainer, GenerationMixin.generate = build_trainer, generate
    try:
        yield probe
    finally:
        build.build_trainer, GenerationMixin.generate = real_build, real_generate


# ----------------------------------------------------------------------------- figures


def job_figures(
    method: str, probe: Probe, rows: list[dict], warmup: int, n_fwd: int, peak: float | None
) -> dict[str, Any]:
    """Throughput figures of one run over the steps after ``warmup`` (see the module doc)."""
    last = max(probe.step_ends)
    if warmup >= last:
        raise ValueError(f"no timed steps: warm-up {warmup} >= steps {last}")
    t0, t1 = probe.step_ends[warmup], probe.step_ends[last]
    tokens_at = {0: 0} | {r["step"]: r["num_tokens"] for r in rows if "num_tokens" in r}
    tokens = tokens_at[last] - tokens_at[warmup]
    wall = t1 - t0
    gens = [g for g in probe.generations if t0 <= g.start < t1]
    gen_seconds = sum(g.seconds for g in gens)
    train_tps = tokens / (wall - gen_seconds)
    out: dict[str, Any] = {
        "timed_steps": last - warmup,
        "tokens_per_step": round(tokens / (last - warmup), 1),
        "seconds_per_step": round(wall / (last - warmup), 4),
        "train_tokens_per_s": round(train_tps, 1),
        "mfu": round(6 * n_fwd * train_tps / (peak * 1e12), 4) if peak else None,
    }
    if method == "grpo":
        if not gens:  # continuous batching decodes outside generate(): step time only
            gen_seconds = 0.0
        lengths = [r["completions/mean_length"] for r in rows if "completions/mean_length" in r]
        out |= {
            "gen_tokens_per_s": round(sum(g.tokens for g in gens) / gen_seconds, 1)
            if gens
            else None,
            "gen_time_share": round(gen_seconds / wall, 3),
            "step_tokens_per_s": round(tokens / wall, 1),
            "completion_mean_length": round(sum(lengths) / len(lengths), 1) if lengths else None,
        }
    return out


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a device by name, or None when it is not in `PEAK_TFLOPS`."""
    for key, value in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def peak_memory(device: str):
    """Yields a dict whose ``gib`` is, once the block ends, the peak tensor memory inside it:
    ``torch.cuda.max_memory_allocated`` on CUDA, `bench.tensor_peak.TensorPeak` on CPU (the
    profiler's allocation records, so ``--cpu-smoke`` checks `plan`'s estimate too)."""
    import torch

    found: dict[str, float] = {}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        yield found
        found["gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 4)
        return
    from bench.tensor_peak import TensorPeak

    with TensorPeak() as peak:
        yield found
    found["gib"] = round(peak.peak_bytes / 2**30, 4)


def run_job(
    shape: Shape, v: Variant, model_dir: Path, n_fwd: int, s: Settings, scratch: Path,
    peak: float | None,
) -> dict[str, Any]:  # fmt: skip
    """Train one variant through `llmscisci_cfg.train.runner.run`; figures keyed
    ``<model>_<variant>_*``, with `plan`'s memory estimate beside the measured peak."""

    from llmscisci_cfg.runs import rundir
    from llmscisci_cfg.train.runner import run

    name = f"{shape.key}_{v.key}"
    path = scratch / f"{name}.yaml"
    path.write_text(yaml_dump(recipe(shape, v, model_dir, s)))
    _free_memory()
    with peak_memory(s.device) as used, instrumented() as probe:
        run_dir = run(str(path), (), scratch / f"run_{name}")
    figures = job_figures(
        v.method, probe, rundir.read_metrics(run_dir), s.warmup_steps, n_fwd, peak
    )
    figures |= {"peak_mem_gib": used["gib"], "lora_params": probe.trainable_params}
    figures |= memory_figures(path, figures["peak_mem_gib"])
    _free_memory()
    return {f"{name}_{k}": v for k, v in figures.items()}


def memory_figures(path: Path, measured_gib: float) -> dict[str, Any]:
    """`plan`'s estimate for the recipe at ``path`` (with the built data's lengths) and its
    error against the measured peak."""
    from llmscisci_cfg.recipe.loader import load_job
    from llmscisci_cfg.train.plan import memory_plan

    est = memory_plan(load_job(str(path))).estimate
    if est is None:
        return {"mem_estimate_gib": None, "mem_estimate_error": None}
    gib = est.total / 2**30
    return {
        "mem_estimate_gib": round(gib, 3),
        "mem_estimate_error": round(gib / measured_gib - 1, 4) if measured_gib else None,
    }


# ----------------------------------------------------------------------------- generation


def measure_generation(
    shape: Shape, model_dir: Path, smoke: bool, row_counts: tuple[int, ...] = (16, 64)
) -> dict[str, Any]:
    """Decode throughput of the engine against the eval path it replaced (plain
    ``model.generate``, dynamic cache), bf16 weights, 128 new tokens per row, at 16 and 64 rows;
    the engine with and without its compiled static-cache decode step. Greedy: the random
    weights rarely emit a stop token, so every row decodes all 128 tokens (counted as such)."""
    import torch
    from transformers import AutoModelForCausalLM

    from llmscisci_cfg.data.preprocess import build_dataset
    from llmscisci_cfg.models import chat
    from llmscisci_cfg.models.generate import stop_ids
    from llmscisci_cfg.models.load import for_generation, load_tokenizer_dir
    from llmscisci_cfg.recipe.loader import load_job
    from llmscisci_cfg.train import methods

    new = 8 if smoke else 128
    device = "cpu" if smoke else "cuda"
    dtype = torch.float32 if smoke else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="sdpa"
    ).to(device)
    model.eval()
    tokenizer = for_generation(load_tokenizer_dir(model_dir))
    job = load_job("builtin:quickstart/sft_tiny")
    data, _ = build_dataset(job, methods.get(job.method), tokenizer=tokenizer)
    prompts = list(data["train"]["prompt"]) + list(data["test"]["prompt"])
    texts = [chat.render(tokenizer, p, add_generation_prompt=True) for p in prompts]
    stops = stop_ids(model, tokenizer)
    out: dict[str, Any] = {}
    prefix = f"{shape.key}_gen"
    for rows in row_counts:
        seconds, warm = _time_generation(model, tokenizer, texts[:rows], new, stops)
        tokens = rows * new
        for k, sec in seconds.items():
            out[f"{prefix}{rows}_{k}_tokens_per_s"] = round(tokens / sec, 1)
            out[f"{prefix}{rows}_{k}_ms_per_step"] = round(1000 * sec / new, 2)
        out[f"{prefix}{rows}_compile_warmup_s"] = round(warm, 1)
        out[f"{prefix}{rows}_compiled_vs_baseline"] = round(
            seconds["baseline"] / seconds["engine_compiled"], 2
        )
        print(f"   gen {rows} rows: {seconds}", flush=True)
    del model
    _free_memory()
    return out


def _time_generation(model, tokenizer, texts, new, stops) -> tuple[dict[str, float], float]:
    """Seconds of one pass over ``texts`` (one batch) per generator, and the compiled
    engine's first pass (which compiles); the baseline is warmed up first."""
    from bench.bench_generate import baseline_generate
    from llmscisci_cfg.models.generate import Request, Sampling, TransformersEngine

    rows = len(texts)
    requests = [Request(prompt=t, sampling=Sampling(max_new_tokens=new)) for t in texts]
    eager = TransformersEngine(model, tokenizer, batch_size=rows, compile="off")
    compiled = TransformersEngine(model, tokenizer, batch_size=rows, compile="on")
    runs = {
        "baseline": lambda: baseline_generate(
            model, tokenizer, texts, batch_size=rows, max_new_tokens=new, stops=stops
        ),
        "engine_eager": lambda: eager.generate(requests),
        "engine_compiled": lambda: compiled.generate(requests),
    }

    def timed(name: str) -> float:
        _sync()
        t0 = time.perf_counter()
        runs[name]()
        _sync()
        return time.perf_counter() - t0

    timed("baseline")  # warm-up (kernels, allocator)
    warm = timed("engine_compiled")  # includes compiling the decode step
    return {name: timed(name) for name in runs}, warm


# ----------------------------------------------------------------------------- environment


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets"):
        try:
            out[f"{name}_version"] = version(name)
        except PackageNotFoundError:
            out[f"{name}_version"] = None
    return out


def missing_packages() -> list[str]:
    import importlib.util

    needed = ["trl", "datasets", "peft", "pydantic", "bitsandbytes"]
    return [n for n in needed if importlib.util.find_spec(n) is None]


def device_name(smoke: bool) -> str:
    import platform

    import torch

    if not smoke:
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores; --cpu-smoke)"


# ----------------------------------------------------------------------------- outputs


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    if percent:
        return f"{100 * value:.1f}%"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def render_section(results: dict[str, Any]) -> str:
    """The ``## GPU`` section of RESULTS.md from ``results_gpu.json`` data."""
    peak = results.get("peak_tflops")
    lines = [
        f"{GPU_HEADING}: {results['device']}",
        "",
        f"Measured by `python -m bench.gpu` on {results['device']}, {results['date']} "
        f"(torch {results.get('torch_version')}, transformers {results.get('transformers_version')}, "
        f"trl {results.get('trl_version')}, bitsandbytes {results.get('bitsandbytes_version')}).",
        f"Randomly initialised models of the published shapes, trained through `llmscisci run`: "
        f"{results.get('settings', '')}.",
        "",
        "| model | job | s/step | training tokens/s | generation tokens/s | peak memory (GiB) "
        "| `plan` estimate (GiB, error) | MFU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    errors = []
    for shape in SHAPES.values():
        for v in VARIANTS.values():
            p = f"{shape.key}_{v.key}_"
            if p + "error" in results:
                errors.append(f"- {shape.title}, {v.title}: {results[p + 'error']}")
            if p + "train_tokens_per_s" not in results:
                continue
            est = results.get(p + "mem_estimate_gib")
            err = results.get(p + "mem_estimate_error")
            est_text = f"{est:.1f} ({err:+.0%})" if est is not None and err is not None else "–"
            lines.append(
                f"| {shape.title} | {v.title} | {_fmt(results.get(p + 'seconds_per_step'))} "
                f"| {_fmt(results[p + 'train_tokens_per_s'])} "
                f"| {_fmt(results.get(p + 'gen_tokens_per_s'))} "
                f"| {_fmt(results[p + 'peak_mem_gib'])} | {est_text} "
                f"| {_fmt(results[p + 'mfu'], True)} |"
            )
    gen = []
    for shape in SHAPES.values():
        for rows in (16, 64):
            p = f"{shape.key}_gen{rows}_"
            if p + "baseline_tokens_per_s" not in results:
                continue
            gen.append(
                f"| {shape.title} | {rows} | {_fmt(results[p + 'baseline_tokens_per_s'])} "
                f"({results[p + 'baseline_ms_per_step']} ms/step) "
                f"| {_fmt(results[p + 'engine_eager_tokens_per_s'])} "
                f"| {_fmt(results[p + 'engine_compiled_tokens_per_s'])} "
                f"({results[p + 'engine_compiled_ms_per_step']} ms/step) "
                f"| {results[p + 'compiled_vs_baseline']}× | {results[p + 'compile_warmup_s']} s |"
            )
        if f"{shape.key}_gen_error" in results:
            errors.append(f"- {shape.title}, generation: {results[f'{shape.key}_gen_error']}")
    if gen:
        lines += [
            "",
            "Generation engine (bf16, greedy, 128 new tokens per row, decode tokens/s):",
            "",
            "| model | rows | plain `generate` (the old eval path) | engine, eager "
            "| engine, compiled | compiled ÷ plain | first call (compiles) |",
            "|---|---|---|---|---|---|---|",
            *gen,
        ]
    peak_text = f"{peak:g} TFLOP/s" if peak else "unknown (pass --peak-tflops)"
    lines += [
        "",
        "Training tokens/s: TRL's `num_tokens` per second of the timed steps (GRPO: time in "
        "`generate()` excluded; with continuous batching the decoding is not timed apart and "
        "stays in). Generation tokens/s: decoded tokens per second in `generate()`. The `plan` "
        "estimate is `llmscisci plan`'s peak for the same recipe; error = estimate ÷ measured "
        "`torch.cuda.max_memory_allocated` − 1.",
        f"MFU = 6 × forward linear weights × training tokens/s ÷ dense bf16 peak ({peak_text}); "
        "with frozen base weights the executed matmul FLOPs are nearer 4×, so this is the "
        "conventional, not the hardware, utilisation. All keys: `bench/results_gpu.json`.",
    ]
    if errors:
        lines += ["", "Jobs that failed or were skipped:", "", *errors]
    if results.get("notes"):
        lines += ["", "Notes on this run:", "", *(f"- {n}" for n in results["notes"])]
    return "\n".join(lines) + "\n"


def replace_gpu_section(markdown: str, section: str) -> str:
    """``markdown`` with its trailing ``## GPU`` section replaced by ``section`` (or added).

    Keeps the contract of `bench.__main__`: the CPU part ends with a newline and the GPU part
    starts at the first ``\\n## GPU``, which that module keeps when it regenerates the table.
    """
    head = markdown.split("\n" + GPU_HEADING, 1)[0]
    if head.startswith(GPU_HEADING) or not head.strip():
        head = "# Benchmark results\n\nCPU figures: not measured yet; run `python -m bench`.\n"
    return head.rstrip("\n") + "\n\n" + section


def write_outputs(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Merge ``results`` into ``out_dir/results_gpu.json`` (same device only) and rewrite the
    ``## GPU`` section of ``out_dir/RESULTS.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path, md = out_dir / RESULTS_JSON, out_dir / RESULTS_MD
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("device") == results.get("device"):
            results = old | results
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    text = md.read_text(encoding="utf-8") if md.is_file() else ""
    md.write_text(replace_gpu_section(text, render_section(results)), encoding="utf-8")
    return path, md


# ----------------------------------------------------------------------------- main


def measure(
    shapes: list[Shape], jobs: list[str], s: Settings, peak: float | None, scratch: Path,
    sink=None, gen_rows: tuple[int, ...] = (16, 64),
) -> dict:  # fmt: skip
    """Build and save every shape, then run ``jobs`` on it (``gen`` and `VARIANTS` keys) in
    order; ``sink(results)`` after each, so a run cut short keeps what it measured. A job that
    fails is recorded as ``<model>_<job>_error`` and the rest go on."""
    import importlib.util
    import traceback

    os.environ.setdefault("LLMSCISCI_CACHE", str(scratch / "cache"))
    results: dict[str, Any] = {}
    for shape in shapes:
        model_dir = scratch / f"model_{shape.key}"
        sizes = save_model(shape, model_dir, s.smoke)
        results |= {f"{shape.key}_{k}": v for k, v in sizes.items()}
        for job in jobs:
            print(f"== {shape.key} {job}", flush=True)
            started = time.perf_counter()
            try:
                if job == "gen":
                    results |= measure_generation(shape, model_dir, s.smoke, gen_rows)
                else:
                    v = VARIANTS[job]
                    fwd = sizes["forward_params"]
                    if v.needs and importlib.util.find_spec(v.needs) is None:
                        results[f"{shape.key}_{job}_error"] = f"skipped: {v.needs} not installed"
                    else:
                        results |= run_job(shape, v, model_dir, fwd, s, scratch, peak)
            except Exception as exc:  # one failing variant must not lose the others
                traceback.print_exc()
                results[f"{shape.key}_{job}_error"] = f"{type(exc).__name__}: {exc}"[:300]
                _free_memory()
            results[f"{shape.key}_{job}_wall_s"] = round(time.perf_counter() - started, 1)
            if sink is not None:
                sink(results)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="Tiny shapes on CPU, temp output.")
    p.add_argument(
        "--smoke-4bit", action="store_true", help="With --cpu-smoke: 4-bit weights (bnb CPU)."
    )
    p.add_argument("--models", default=",".join(SHAPES), help="Comma-separated: %(default)s.")
    p.add_argument(
        "--jobs",
        default=DEFAULT_JOBS,
        help=f"Comma-separated, in order: gen (the engine's decode throughput) and any of "
        f"{', '.join(VARIANTS)}. Default: %(default)s.",
    )
    p.add_argument("--peak-tflops", type=float, help="Device dense bf16 peak, TFLOP/s.")
    p.add_argument("--out-dir", type=Path, help="Default: bench/ (--cpu-smoke: a temp dir).")
    p.add_argument("--gen-rows", default="16,64", help="Batch sizes of the gen job.")
    p.add_argument(
        "--reestimate",
        type=Path,
        metavar="JSON",
        help="No GPU: recompute the memory estimates in this results_gpu.json (see `reestimate`).",
    )
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--sft-steps", type=int, default=12, help="Warm-up steps included.")
    p.add_argument("--grpo-steps", type=int, default=5, help="Warm-up steps included.")
    p.add_argument(
        "--render", nargs="+", type=Path, metavar="JSON",
        help="No training: merge these results_gpu.json files into --out-dir and rewrite "
        "its RESULTS.md GPU section.",
    )  # fmt: skip
    return p.parse_args(argv)


def reestimate(path: Path, s: Settings) -> None:
    """Recompute `plan`'s memory estimate (and its error) for every job measured in
    ``path`` (a results_gpu.json), here, without a GPU: the estimate needs only each recipe,
    its built data and the model's config.json, all rebuilt here; the peaks stay the
    measured ones. For when the estimator changes after a GPU run."""
    from llmscisci_cfg.data.preprocess import build_dataset
    from llmscisci_cfg.models import tiny
    from llmscisci_cfg.recipe.loader import load_job
    from llmscisci_cfg.train import methods

    results = json.loads(path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-estimate-") as tmp:
        os.environ["LLMSCISCI_CACHE"] = str(Path(tmp) / "cache")
        for shape in SHAPES.values():
            model_dir = Path(tmp) / shape.key
            model_config(shape, smoke=False).save_pretrained(model_dir)
            tiny.load_tiny_tokenizer(shape.template).save_pretrained(model_dir)
            for v in VARIANTS.values():
                key = f"{shape.key}_{v.key}_"
                if key + "peak_mem_gib" not in results:
                    continue
                recipe_path = Path(tmp) / f"{shape.key}_{v.key}.yaml"
                data = recipe(shape, v, model_dir, s)
                recipe_path.write_text(yaml_dump(data), encoding="utf-8")
                job = load_job(str(recipe_path))
                build_dataset(job, methods.get(job.method))
                figures = memory_figures(recipe_path, results[key + "peak_mem_gib"])
                results |= {key + k: value for k, value in figures.items()}
                print(f"{key}: {figures}")
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def yaml_dump(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def render(files: list[Path], out_dir: Path) -> None:
    results: dict[str, Any] = {}
    for f in files:
        results |= json.loads(f.read_text(encoding="utf-8"))
    for path in write_outputs(results, out_dir):
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reestimate:
        reestimate(
            args.reestimate, gpu_settings(args.warmup_steps, args.sft_steps, args.grpo_steps)
        )
        return 0
    if args.render:
        render(args.render, args.out_dir or HERE)
        return 0
    unknown = [m for m in args.models.split(",") if m not in SHAPES]
    if unknown:
        print(f"bench.gpu: unknown --models {unknown}; choose from {list(SHAPES)}", file=sys.stderr)
        return 2
    jobs = args.jobs.split(",")
    unknown = [j for j in jobs if j != "gen" and j not in VARIANTS]
    if unknown:
        print(
            f"bench.gpu: unknown --jobs {unknown}; choose from gen, {', '.join(VARIANTS)}",
            file=sys.stderr,
        )
        return 2
    missing = missing_packages()
    if missing:
        print(
            f"bench.gpu: missing packages {missing}; see `python -m bench.gpu` doc", file=sys.stderr
        )
        return 2
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(
            "bench.gpu: no CUDA device here; run it on a GPU (see the module docstring), "
            "or check the code path on CPU with --cpu-smoke",
            file=sys.stderr,
        )
        return 2
    s = (
        smoke_settings(args.smoke_4bit)
        if args.cpu_smoke
        else gpu_settings(args.warmup_steps, args.sft_steps, args.grpo_steps)
    )
    device = device_name(args.cpu_smoke)
    peak = args.peak_tflops or (None if args.cpu_smoke else peak_tflops(device))
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="bench-gpu-")) if s.smoke else HERE)
    header = {
        "device": device,
        "peak_tflops": peak,
        "cpu_smoke": s.smoke,
        "settings": s.describe(),
        "date": datetime.date.today().isoformat(),
        **versions(),
    }

    def sink(figures: dict[str, Any]) -> None:
        write_outputs(header | figures, out_dir)

    with tempfile.TemporaryDirectory(prefix="bench-gpu-scratch-") as tmp:
        shapes = [SHAPES[m] for m in args.models.split(",")]
        rows = tuple(int(r) for r in args.gen_rows.split(","))
        measure(shapes, jobs, s, peak, Path(tmp), sink, rows)
    print(f"wrote {out_dir / RESULTS_JSON} and {out_dir / RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
