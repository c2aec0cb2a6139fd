"""`llmscisci plan`'s memory estimate against the measured peak of the same run, on CPU.

A model of the gemma-3-1b layout at a size CPU trains in seconds (hidden 256, 4 layers,
head_dim 64, MLP 1024, the tiny tokenizer's vocabulary) is trained through `llmscisci run` (2
steps, LoRA r 8 on all linear layers, `builtin:sample`) for SFT (LoRA dropout 0.05 and 0), DPO
and GRPO, in float32 and again in bf16 under CPU autocast (``*_bf16``), each inside
`bench.tensor_peak.TensorPeak`: the peak of torch's CPU tensors, load included, the CPU
counterpart of the ``torch.cuda.max_memory_allocated`` that bench.gpu compares on a GPU. The
figure per method is estimate ÷ measured − 1.

What this checks is the estimate's sum of parts through TRL's real code path: weights, LoRA
and optimizer states, activations of 2 × batch DPO sequences or GRPO's prompt + completion,
and TRL's fused LM head (on CPU without Triton: every position projected, the torch fold's
fp32 tiles), and what bf16 autocast keeps. What it cannot check is CUDA-only: CUDA's attention
kernels, Triton's fold, bitsandbytes' CUDA kernels, the allocator's rounding; bench.gpu
measures those.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

# config values over bench.gpu's smoke sizes
SIZES = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "head_dim": 64}
JOBS = {"sft": "sft_bf16", "sft_nodrop": "sft_bf16_nodrop", "dpo": "dpo_bf16", "grpo": "grpo_bf16"}


def measure(
    job: str, scratch: Path, model_dir: Path | None = None, bf16: bool = False
) -> dict[str, float]:
    """``job`` (a `JOBS` key) trained once: measured and estimated peak in MiB, and the error.
    ``model_dir``: an already saved model (`save`), else one is saved under ``scratch``.
    ``bf16``: bf16 weights under bf16 autocast (CPU's), as the GPU jobs train."""
    from bench import gpu
    from bench.tensor_peak import TensorPeak
    from llmscisci_cfg.train.runner import run

    shape = gpu.SHAPES["gemma3_1b"]
    if model_dir is None:
        model_dir = save(scratch / "model")
    settings = replace(
        gpu.smoke_settings(),
        sft_batch=4,
        grpo_batch=8,
        num_generations=4,
        max_completion_length=32,
        lora_r=8,
    )
    recipe = gpu.recipe(shape, gpu.VARIANTS[JOBS[job]], model_dir, settings)
    if bf16:
        recipe["model"]["dtype"] = "bfloat16"
        recipe["launch"]["mixed_precision"] = "bf16"
    name = f"{job}_bf16" if bf16 else job
    path = scratch / f"{name}.yaml"
    path.write_text(gpu.yaml_dump(recipe))
    with TensorPeak() as peak:
        run(str(path), (), scratch / f"run_{name}")
    measured = peak.peak_bytes / 2**30
    estimate = gpu.memory_figures(path, measured)["mem_estimate_gib"]
    return {
        "measured_mib": round(measured * 1024, 1),
        "estimate_mib": round(estimate * 1024, 1),
        "error": round(estimate / measured - 1, 4),
    }


def save(directory: Path) -> Path:
    from bench import gpu

    gpu.save_model(gpu.SHAPES["gemma3_1b"], directory, smoke=True, sizes=SIZES)
    return directory


def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        scratch = Path(tmp)
        os.environ.setdefault("LLMSCISCI_CACHE", str(scratch / "cache"))
        model_dir = save(scratch / "model")
        for bf16 in (False, True):
            for job in JOBS:
                found = measure(job, scratch, model_dir, bf16)
                name = f"{job}_bf16" if bf16 else job
                figures[f"memory_estimate_error_{name}"] = found["error"]
                figures[f"memory_measured_mib_{name}"] = found["measured_mib"]
                figures[f"memory_estimate_mib_{name}"] = found["estimate_mib"]
    return figures


if __name__ == "__main__":
    print(run())
