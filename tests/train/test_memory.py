"""The peak-memory estimate: shapes, exact weight bytes, activations against autograd, the
estimate against the measured peak of whole CPU runs, and against peaks measured on an H200."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace

import pytest

from llmscisci_cfg.models.shapes import shape_for, shape_from_config
from llmscisci_cfg.recipe.loader import load_recipe
from llmscisci_cfg.train import memory
from llmscisci_cfg.train.memory import (
    GIB,
    Settings,
    estimate,
    layer_bytes_per_seq,
    layer_bytes_per_token,
    quantization_note,
    settings_for,
    weight_bytes,
)
from tests.conftest import RECIPES, all_recipes
from tests.models.test_shapes import GEMMA, LLAMA, LLAMA_CONFIG, QWEN

QLORA = Settings(quant_bits=4, lora_r=16)  # the bench: nf4 + double quant, LoRA r16 all-linear


def _settings(recipe, device: str, lengths=None) -> Settings:
    """`settings_for` the recipe as compiled for ``device`` (a machine with CUDA, or without)."""
    from llmscisci_cfg.recipe.resolve import resolve
    from llmscisci_cfg.train.compile import compile_recipe

    return settings_for(compile_recipe(resolve(recipe, cuda=device == "cuda")), lengths)


# ----------------------------------------------------------------------------- light


def test_import_and_estimate_load_no_ml_library():
    code = (
        "import sys\n"
        "from llmscisci_cfg.models.shapes import shape_for\n"
        "from llmscisci_cfg.train import memory\n"
        "from llmscisci_cfg.recipe.loader import load_job\n"
        "from llmscisci_cfg.train.compile import compile_recipe\n"
        "c = compile_recipe(load_job('builtin:quickstart/grpo_tiny'))\n"
        "memory.estimate(shape_for('builtin:tiny-gemma'), memory.settings_for(c))\n"
        "shape_for('google/gemma-3-1b-it'); memory.device_memory()\n"
        "heavy = ('torch', 'transformers', 'trl', 'peft', 'bitsandbytes', 'numpy')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- shapes


def test_gemma_count_is_the_benchmarked_one():
    # ../shared/bench/gpu_baseline_h200_2026-11-26.json: gemma3_1b_total_params, *_lora_params
    assert GEMMA.params == 999_885_952
    assert memory.lora_params(GEMMA, QLORA) == 13_045_760


@pytest.mark.parametrize("name", ["builtin:tiny", "builtin:tiny-qwen", "builtin:tiny-gemma"])
def test_tiny_weights_are_counted_exactly(name):
    import torch

    from llmscisci_cfg.models.tiny import build_tiny_model

    shape = shape_for(name)
    model = build_tiny_model(name)
    params = list(model.parameters())  # tied weights once
    assert shape.params == sum(p.numel() for p in params)
    fp32 = Settings(dtype_bytes=4, mixed_precision=False)
    assert weight_bytes(shape, fp32) == sum(p.numel() * p.element_size() for p in params)
    half = model.to(torch.bfloat16).parameters()
    assert weight_bytes(shape, Settings()) == sum(p.numel() * p.element_size() for p in half)


# ----------------------------------------------------------------------------- activations


def _saved_bytes(loss, params) -> int:
    """Bytes of the tensors autograd keeps for backward (storage-deduplicated, no parameters)."""
    import torch

    owned = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}
    stack, done = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in done:
            continue
        done.add(node)
        tensors = []
        for attr in dir(node):
            if attr.startswith("_saved_"):
                value = getattr(node, attr, None)
                tensors += value if isinstance(value, (tuple, list)) else [value]
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in owned:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        stack += [n for n, _ in node.next_functions]
    return sum(seen.values())


def _lora(model, r: int) -> None:
    """LoRA as peft applies it (``base(x) + B(A(dropout(x))) * scale``, dropout 0), base frozen."""
    import torch

    class Lora(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base
            self.A = torch.nn.Linear(base.in_features, r, bias=False)
            self.B = torch.nn.Linear(r, base.out_features, bias=False)

        def forward(self, x):
            return self.base(x) + self.B(self.A(x)) * 2.0

    model.requires_grad_(False)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    setattr(parent, name, Lora(child))


def _layer_saved_bytes(name: str, lora: bool, batch: int, length: int) -> float:
    """What one decoder layer keeps: a 2-layer minus a 1-layer tiny model (fp32, CPU, padded)."""
    import torch
    from transformers import AutoModelForCausalLM

    from llmscisci_cfg.models.tiny import tiny_config

    ids = torch.randint(3, 200, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, : length // 4] = 0  # left padding: the mask reaches attention
    saved = []
    for layers in (1, 2):
        config = tiny_config(name)
        config.num_hidden_layers = layers
        if hasattr(config, "layer_types"):
            config.layer_types = ["full_attention"] * layers
        config._attn_implementation = "sdpa"
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        if lora:
            _lora(model, r=4)
        model.train()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        saved.append(_saved_bytes(loss, list(model.parameters())))
    return saved[1] - saved[0]


@pytest.mark.parametrize("name", ["builtin:tiny", "builtin:tiny-gemma"])
@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_layer_activations_match_what_autograd_keeps(name, lora):
    """The per-layer model, checked where CPU runs the same code as CUDA: fp32, sdpa with a
    padding mask, LoRA without dropout or full fine-tuning. (Dropout's mask and bf16 autocast
    are covered by the whole CPU runs and the H200 peaks below.)"""
    shape, batch, length = shape_for(name), 2, 64
    s = Settings(dtype_bytes=4, mixed_precision=False, lora_r=4 if lora else None, batch=batch)
    s = replace(s, seq_len=length, lora_dropout=0.0)
    expected = sum(layer_bytes_per_token(shape, s).values()) * batch * length
    expected += layer_bytes_per_seq(shape, s) * batch * length * length
    measured = _layer_saved_bytes(name, lora, batch, length)
    assert measured == pytest.approx(expected, rel=0.1)


# ----------------------------------------------------------------------------- whole runs


@pytest.fixture(scope="module")
def midsize_model(tmp_path_factory):
    from bench import bench_memory

    return bench_memory.save(tmp_path_factory.mktemp("memory") / "model")


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "job,bf16",
    [
        pytest.param("sft", False, marks=SLOW),
        pytest.param("dpo", True, marks=SLOW),
        pytest.param("sft_nodrop", False, marks=SLOW),
        pytest.param("dpo", False, marks=SLOW),
        pytest.param("grpo", False, marks=SLOW),
    ],
)
def test_estimate_is_near_the_measured_peak_of_a_cpu_run(
    job, bf16, midsize_model, tmp_path, monkeypatch
):
    """`plan`'s estimate against the peak of torch's tensors in a real `llmscisci run` (CPU,
    a gemma-3-shaped model of hidden 256 × 4 layers; bench/bench_memory.py): within 10% here
    (2026-11-27, float32: −4.3%, +4.4%, +4.6%, +2.0%; DPO under bf16 autocast +3.8%), the goal
    being 20%."""
    from bench import bench_memory

    monkeypatch.setenv("LLMSCISCI_CACHE", str(tmp_path / "cache"))
    found = bench_memory.measure(job, tmp_path, midsize_model, bf16)
    assert abs(found["error"]) <= 0.10, found


def test_the_cpu_peak_counts_what_a_block_allocates():
    import torch

    from bench.tensor_peak import TensorPeak

    with TensorPeak() as peak:
        a = torch.empty(1000, 1000)  # 4 MB
        b = torch.empty(2000, 1000)  # 8 MB: 12 MB alive
        del a
        c = torch.empty(500, 1000)  # 10 MB alive
        del b, c
    assert peak.peak_bytes == 12_000_000
    assert peak.last("aten::empty") is not None and peak.last("no such op") is None


def test_cpu_runs_project_every_position_through_the_fused_head():
    """Without Triton TRL scores every position (not only completions) and folds each tile in
    torch: GRPO's head on CPU is far larger than on CUDA; the header says what is counted."""
    s = Settings(method="grpo", lora_r=16, batch=16, grpo_prompt_len=245)
    cuda, cpu = estimate(GEMMA, s), estimate(GEMMA, replace(s, device="cpu"))
    tile = min(16 * (245 + 256), memory.FUSED_TOKEN_CHUNK)
    assert cuda.get("lm head") < cpu.get("lm head")
    assert cpu.get("lm head") > memory.TORCH_FOLD_TILES * tile * memory.FUSED_VOCAB_CHUNK * 4
    assert cuda.as_text().startswith("peak GPU memory ≈")
    assert cpu.as_text().startswith("peak memory ≈") and "tensors in RAM" in cpu.as_text()


def _transformers_paged_cache(config, kwargs: dict) -> int:
    """Bytes transformers 5.23 allocates for that cache (on the meta device) and its masks."""
    import types

    import torch
    from transformers.generation import ContinuousBatchingConfig
    from transformers.generation.continuous_batching import cache as paged

    config._attn_implementation = "sdpa"
    cb = ContinuousBatchingConfig(**kwargs)
    cb.use_async_batching, cb.max_blocks_per_request = False, 0
    handler = paged.PagedAttentionMemoryHandler
    real = handler.get_available_memory
    handler.get_available_memory = lambda self: 10**13
    try:
        cache = paged.PagedAttentionCache(
            config, cb, device="meta", distributed_helper=types.SimpleNamespace(tp_size=1),
            dtype=torch.bfloat16,
        )  # fmt: skip
    finally:
        handler.get_available_memory = real
    step, masks = kwargs["max_batch_tokens"], len(cache.cache_allocators)
    return cache.cache_tensor.numel() + masks * 2 * step * (cache.max_tokens_read + step)


@pytest.mark.parametrize(
    "model", ["builtin:tiny", "builtin:tiny-gemma", "gemma3_1b", "qwen25_1_5b"]
)
def test_continuous_batching_cache_is_what_transformers_allocates(model):
    """16 rollouts of 245 + 256 tokens: the paged cache `continuous_batching_config` sizes and
    the masks of its scheduler steps, against transformers' own allocation (within 10%; the
    sliding-window models' masks span what their few full-attention layers could read)."""
    from bench import gpu
    from llmscisci_cfg.models.tiny import tiny_config
    from llmscisci_cfg.train.memory import paged_cache_bytes
    from llmscisci_cfg.train.methods.grpo import continuous_batching_config

    if model.startswith("builtin:"):
        config, shape = tiny_config(model), shape_for(model)
    else:
        config = gpu.model_config(gpu.SHAPES[model], smoke=False)
        shape = shape_from_config(config.to_dict(), model)
    kwargs = continuous_batching_config(16, 245, 256)
    assert kwargs == {
        "page_size": 256,
        "num_blocks": 48,
        "max_batch_tokens": 8016,
        "max_memory_percent": 0.9,
    }
    estimated, step, blocks = paged_cache_bytes(shape, 16, 245, 256)
    assert (step, blocks) == (8016, 48)
    assert estimated == pytest.approx(_transformers_paged_cache(config, kwargs), rel=0.1)
    s = Settings(method="grpo", lora_r=16, batch=16, grpo_prompt_len=245)
    paged = estimate(shape, replace(s, continuous_batching=True)).get("generation")
    longer = replace(s, continuous_batching=True, generation_prompt_len=600)  # eval's prompts
    assert estimate(shape, longer).get("generation") > paged > estimated


# ----------------------------------------------------------------------------- calibration

# Peak torch.cuda.max_memory_allocated (GiB) on an NVIDIA H200, gemma-3-1b shape with its real
# 262,144-token vocabulary (bench/gpu.py keeps the shape's vocab_size; only the token ids come
# from the tiny tokenizer).
# - bench: ../shared/bench/gpu_baseline_h200_2026-11-26.json, `llmscisci run` through TRL.
#   SFT: 16 rows padded to the longest builtin:sample example, 297 tokens as TRL tokenizes it
#   (TRL averaged 255 non-pad tokens per row; our render of the longest is 308, of the mean 266).
#   GRPO: 2 prompts x 8 completions; the 10 prompts of its 5 steps pad to ~245 (expected max of
#   10 draws from the train prompts, 214..258 tokens) + 256 completion tokens.
# - probe: fwd + bwd + AdamW steps on the same libraries, TRL's fused LM head, LoRA r16
#   dropout 0.05 all-linear, first row left-padded by a quarter (2026-11-26).
H200_PEAKS = [
    ("bench SFT nf4", 14.553, GEMMA, QLORA, dict(batch=16, seq_len=297)),
    (
        "bench GRPO nf4",
        22.789,
        GEMMA,
        QLORA,
        dict(method="grpo", batch=16, grpo_prompt_len=245, grpo_completion_len=256),
    ),
    ("probe nf4", 14.619, GEMMA, QLORA, dict(batch=16, seq_len=300)),
    ("probe bf16", 15.519, GEMMA, Settings(lora_r=16), dict(batch=16, seq_len=300)),
    ("probe nf4 ckpt", 2.012, GEMMA, QLORA, dict(batch=16, seq_len=300, gradient_checkpointing=True)),
    (
        "probe nf4 eager ckpt",
        1.987,
        GEMMA,
        QLORA,
        dict(batch=4, seq_len=1024, gradient_checkpointing=True, attn_implementation="eager"),
    ),
    ("probe qwen nf4", 15.981, QWEN, QLORA, dict(batch=8, seq_len=512)),
    ("probe llama full bf16", 12.146, LLAMA, Settings(), dict(batch=4, seq_len=512)),
    ("probe llama bf16 no pad", 6.881, LLAMA, Settings(lora_r=16), dict(batch=1, seq_len=2048)),
]  # fmt: skip


@pytest.mark.parametrize("label,gib,shape,settings,fields", H200_PEAKS, ids=lambda v: v)
def test_estimate_is_near_the_h200_peaks(label, gib, shape, settings, fields):
    """Within 10% of each (the goal was 20%); see H200_PEAKS for where the figures come from."""
    assert estimate(shape, settings, **fields).total / GIB == pytest.approx(gib, rel=0.1)


# ----------------------------------------------------------------------------- behaviour


def test_parts_add_up_and_print():
    est = estimate(GEMMA, QLORA, method="grpo", batch=16)
    static = sum(p.bytes for p in est.parts if p.phase == "static")
    assert est.total == static + est.phase_bytes("train") and est.peak_phase == "train"
    text = est.as_text()
    assert text.startswith("peak GPU memory ≈") and "activations" in text and "generation" in text
    data = json.loads(json.dumps(est.as_dict()))
    assert data["total_bytes"] == est.total and data["params"] == GEMMA.params


def test_settings_change_the_parts_they_should():
    sft = estimate(GEMMA, QLORA, batch=4, seq_len=1024)
    ckpt = estimate(GEMMA, QLORA, batch=4, seq_len=1024, gradient_checkpointing=True)
    assert ckpt.get("activations") < sft.get("activations") / 5
    dpo = estimate(GEMMA, QLORA, method="dpo", batch=4, seq_len=1024)
    assert dpo.get("activations") < 2 * sft.get("activations")  # twice the rows, no dropout
    assert dpo.get("activations") > 1.5 * sft.get("activations")
    assert dpo.get("reference") == 0  # the adapter is switched off instead
    full_dpo = estimate(GEMMA, method="dpo", batch=1, seq_len=256)
    assert full_dpo.get("reference") == full_dpo.get("weights")
    assert estimate(GEMMA, method="grpo", beta=0.04).get("reference") > 0
    assert estimate(GEMMA, QLORA, method="grpo", beta=0.04).get("reference") == 0
    long = estimate(GEMMA, QLORA, method="grpo", batch=16, grpo_completion_len=1024)
    assert long.get("generation") > estimate(GEMMA, QLORA, method="grpo", batch=16).get(
        "generation"
    )
    adam, adam8 = estimate(LLAMA), estimate(LLAMA, optimizer="adamw_8bit")
    assert adam.get("optimizer") == 2 * 2 * LLAMA.params  # bf16 moments
    assert adam8.get("optimizer") < adam.get("optimizer") / 1.9
    assert estimate(LLAMA, optimizer="sgd").get("optimizer") == 0
    unfused = estimate(GEMMA, QLORA, batch=2, seq_len=100, fused_lm_head=False)
    assert unfused.get("lm head") == 2 * 100 * GEMMA.vocab * (2 + 2 * 4)
    attn_only = estimate(GEMMA, QLORA, lora_targets=("q_proj", "v_proj"))
    assert memory.lora_params(GEMMA, attn_only.settings) == 26 * 16 * (1152 + 1024 + 1152 + 256)
    with pytest.raises(ValueError, match="LoRA"):
        estimate(GEMMA, quant_bits=4)


def test_four_bit_block_constants():
    plain = weight_bytes(GEMMA, replace(QLORA, double_quant=False))
    double = weight_bytes(GEMMA, QLORA)
    per_param = 4 / 64 - (1 / 64 + 4 / (64 * 256))  # fp32 absmax vs 8-bit absmax + fp32 per 256
    assert plain - double == pytest.approx(GEMMA.linear_params * per_param, abs=1)
    unquantized = weight_bytes(GEMMA, Settings())
    assert unquantized == 2 * GEMMA.params


@pytest.mark.parametrize("recipe", all_recipes(), ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_shipped_recipe_has_an_estimate(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here
    r = load_recipe(recipe)
    if r.method.name == "predict":  # trains nothing
        return
    shape = shape_for(r.model.name_or_path)
    if r.model.name_or_path.endswith("quickstart_sft/final"):  # exists once sft_tiny has run
        assert shape is None
        return
    assert shape is not None
    device = "cuda" if r.launch.device == "cuda" else "cpu"
    est = estimate(shape, _settings(r, device))
    assert est.total > est.get("weights") + est.get("activations") > est.get("weights") > 0


def test_settings_follow_the_recipe():
    r = load_recipe(RECIPES / "grpo_gemma.yaml")
    s = _settings(r, "cuda")
    assert (s.method, s.quant_bits, s.lora_r, s.batch) == (
        "grpo",
        None,
        4,
        4,
    )  # bf16: measured faster
    assert (s.attn_implementation, s.gradient_checkpointing, s.act_bytes) == ("eager", True, 2)
    assert (s.grpo_completion_len, s.grpo_prompt_len, s.generation_batch) == (512, 512, 4)
    assert s.assumed == ("prompt 512 tokens",)
    known = _settings(r, "cuda", {"prompt": 300, "total": None})
    assert known.grpo_prompt_len == 300 and known.assumed == ()
    sft = _settings(load_recipe(RECIPES / "repro_effort" / "sft_qwen2.5.yaml"), "cuda")
    assert (sft.seq_len, sft.quant_bits, sft.dtype_bytes) == (2048, None, 2)
    tiny = _settings(load_recipe("builtin:quickstart/sft_tiny"), "cpu")
    assert (tiny.dtype_bytes, tiny.mixed_precision, tiny.act_bytes) == (4, False, 4)
    # an eval batch of one whole group (4) outgrows the rollouts of a training step (2 × 1)
    uneven = r.model_copy(
        update={
            "train": r.train.model_copy(update={"per_device_batch_size": 2, "eval_steps": 5}),
            "generation": r.generation.model_copy(update={"continuous_batching": True}),
        }
    )
    cb = _settings(uneven, "cuda", {"prompt": 300, "total": None, "prompt_any": 410})
    assert (cb.generation_batch, cb.continuous_batching, cb.generation_prompt_len) == (4, True, 410)


# ----------------------------------------------------------------------------- this machine


def _fake_smi(folder, body: str) -> None:
    exe = folder / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_device_memory_reads_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(
        tmp_path,
        'if [ "$3" = "-i" ] && [ "$4" = "3" ]; then echo 81559; else echo 143771; echo 1; fi',
    )
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert memory.device_memory() == 143771 * 2**20
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert memory.device_memory() == 81559 * 2**20
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert memory.device_memory() is None
    _fake_smi(tmp_path, "echo 'NVIDIA-SMI has failed'; exit 9")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert memory.device_memory() is None


def test_device_memory_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert memory.device_memory() is None


def test_quantization_note_only_for_small_savings():
    note = quantization_note(GEMMA, 139 * GIB, replace(QLORA, batch=16, seq_len=300))
    assert note is not None
    assert "save only 1.0 GiB" in note and "28% slower" in note and "29% slower" in note
    assert quantization_note(GEMMA, 16 * GIB) is None  # 1 GiB is worth it on a 16 GiB card
    assert quantization_note(GEMMA, None) is None
    huge = replace(QLORA, batch=64, seq_len=4096)  # bf16 would not fit in 139 GiB
    assert quantization_note(GEMMA, 139 * GIB, huge) is None


def test_estimate_job_for_a_resolved_job(tmp_path, monkeypatch):
    from llmscisci_cfg.recipe.loader import load_job

    monkeypatch.chdir(tmp_path)
    from llmscisci_cfg.train.compile import compile_recipe

    def estimate_job(ref: str):
        job = load_job(ref, ())
        return memory.estimate_job(job, compile_recipe(job))

    est = estimate_job("builtin:quickstart/sft_tiny")
    assert est.shape == shape_for("builtin:tiny") and est.settings.method == "sft"
    assert "builtin:tiny" in est.as_text()
    no_final_yet = estimate_job("builtin:quickstart/grpo_tiny")
    assert no_final_yet is None
    final = tmp_path / "runs" / "quickstart_sft" / "final"  # what sft_tiny leaves
    final.mkdir(parents=True)
    (final / "config.json").write_text(json.dumps({**LLAMA_CONFIG, "num_hidden_layers": 3}))
    est = estimate_job("builtin:quickstart/grpo_tiny")
    assert est.shape.layers == 3 and est.settings.method == "grpo"


def test_packed_rows_are_estimated_at_max_length():
    """Packing fills rows to max_length whatever the examples' lengths."""
    from llmscisci_cfg.recipe.loader import load_recipe_text
    from tests.run_helpers import recipe_text

    packed = load_recipe_text(
        recipe_text("sft").replace("max_length: 256", "max_length: 256\n  packing: true")
    )
    plain = load_recipe_text(recipe_text("sft"))
    lengths = {"prompt": 60, "total": 90}
    assert _settings(packed, "cpu", lengths).seq_len == 256
    assert _settings(plain, "cpu", lengths).seq_len == 90


@pytest.mark.parametrize(
    "targets", ["all-linear", ("q_proj", "down_proj"), ("embed_tokens", "lm_head", "v_proj")]
)
def test_merged_rollouts_add_a_dense_copy_of_the_adapted_layers(targets):
    """`MergedCopy.added_bytes` of the tiny model is what the estimate adds."""
    from peft import LoraConfig, get_peft_model

    from llmscisci_cfg.models.merged import MergedCopy
    from llmscisci_cfg.models.tiny import build_tiny_model

    shape = shape_for("builtin:tiny")
    fields = dict(method="grpo", lora_r=4, lora_targets=targets, dtype_bytes=4)
    plain = estimate(shape, mixed_precision=False, **fields)
    merged = estimate(shape, mixed_precision=False, merged_rollouts=True, **fields)
    part = merged.get("merged copy")
    assert part > 0 and merged.total - plain.total == part
    modules = targets if isinstance(targets, str) else list(targets)
    policy = get_peft_model(
        build_tiny_model("builtin:tiny"), LoraConfig(r=4, target_modules=modules)
    )
    assert part == MergedCopy(policy).added_bytes


def test_a_4bit_base_is_copied_in_its_compute_dtype():
    shape = shape_for("builtin:tiny")
    fields = dict(method="grpo", lora_r=4, quant_bits=4, merged_rollouts=True)
    assert estimate(shape, **fields).get("merged copy") == shape.linear_params * 2
    wide = estimate(shape, quant_compute_bytes=4, **fields).get("merged copy")  # + cast copies
    assert wide == (shape.linear_params + shape.embedding_params + shape.small_params) * 4
