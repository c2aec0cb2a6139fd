"""bench/gpu.py: the GPU section of RESULTS.md, the figures' arithmetic, and the CPU smoke run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench import gpu

REPO = Path(__file__).resolve().parents[2]
CPU_RESULTS = {
    "validate_seconds": 0.21,
    "rewards_per_second": 250_000.0,
    "quickstart_seconds": 60.5,
    "machine": "x86_64 2 cores",
    "date": "2026-11-20",
}


def gpu_results(device: str = "NVIDIA H100 80GB HBM3", **figures) -> dict:
    base = {
        "device": device,
        "date": "2026-11-21",
        "peak_tflops": 989.4,
        "settings": "4-bit nf4",
        "torch_version": "2.11.0",
        "gemma3_1b_sft_train_tokens_per_s": 20_000.0,
        "gemma3_1b_sft_peak_mem_gib": 9.5,
        "gemma3_1b_sft_mfu": 0.121,
    }
    return base | figures


# ----------------------------------------------------------------------------- RESULTS.md section


def test_gpu_section_round_trips_through_the_cpu_table_regeneration():
    cpu = bench_main.write_markdown(CPU_RESULTS)
    section = gpu.render_section(gpu_results())
    combined = gpu.replace_gpu_section(cpu, section)
    assert combined.startswith(cpu) and combined.endswith(section)
    assert combined.count("\n## GPU") == 1
    # what `python -m bench` does when it regenerates the CPU table
    kept = "\n## GPU" + combined.split("\n## GPU", 1)[1]
    regenerated = bench_main.write_markdown(CPU_RESULTS | {"validate_seconds": 0.3}) + kept
    assert regenerated.endswith(section)
    assert gpu.replace_gpu_section(regenerated, section) == regenerated


def test_gpu_section_is_replaced_not_appended():
    cpu = bench_main.write_markdown(CPU_RESULTS)
    first = gpu.replace_gpu_section(cpu, gpu.render_section(gpu_results()))
    second_section = gpu.render_section(gpu_results("NVIDIA H200"))
    second = gpu.replace_gpu_section(first, second_section)
    assert second == gpu.replace_gpu_section(cpu, second_section)
    assert "H100" not in second and second.count("## GPU") == 1


def test_gpu_section_without_a_results_file_survives_the_cpu_regeneration():
    text = gpu.replace_gpu_section("", gpu.render_section(gpu_results()))
    assert "\n## GPU: NVIDIA H100 80GB HBM3" in text  # `python -m bench` keeps what follows


def test_section_names_the_device_and_formats_the_row():
    section = gpu.render_section(gpu_results())
    assert section.startswith("## GPU: NVIDIA H100 80GB HBM3\n")
    row = "| gemma-3-1b-it shape | SFT QLoRA (baseline settings) | – | 20,000 | – | 9.50 | – | 12.1% |"
    assert row in section
    assert "Qwen2.5" not in section  # only measured rows
    assert "989.4 TFLOP/s" in section


def test_outputs_merge_runs_on_the_same_device_and_reset_on_another(tmp_path):
    gpu.write_outputs(gpu_results(), tmp_path)
    qwen = {"qwen25_1_5b_grpo_train_tokens_per_s": 9000.0, "qwen25_1_5b_grpo_mfu": 0.08}
    qwen |= {"qwen25_1_5b_grpo_peak_mem_gib": 20.0, "qwen25_1_5b_grpo_gen_tokens_per_s": 1500.0}
    gpu.write_outputs(gpu_results(**qwen), tmp_path)
    merged = json.loads((tmp_path / "results_gpu.json").read_text())
    assert merged["gemma3_1b_sft_mfu"] == 0.121 and merged["qwen25_1_5b_grpo_mfu"] == 0.08
    md = (tmp_path / "RESULTS.md").read_text()
    assert (
        "| Qwen2.5-1.5B-Instruct shape | GRPO QLoRA (baseline settings) | – | 9,000 | 1,500 | 20.00 | – | 8.0% |"
        in md
    )
    gpu.write_outputs({"device": "NVIDIA H200", "date": "2026-11-22"}, tmp_path)
    fresh = json.loads((tmp_path / "results_gpu.json").read_text())
    assert "gemma3_1b_sft_mfu" not in fresh


# ----------------------------------------------------------------------------- figures


def test_job_figures_take_generation_out_of_grpo_training_time():
    probe = gpu.Probe(step_ends={0: 0.0, 1: 10.0, 2: 14.0, 3: 18.0})
    probe.generations = [
        gpu.Generation(start=0.5, seconds=5.0, tokens=999),  # warm-up step: not counted
        gpu.Generation(start=10.1, seconds=1.0, tokens=400),
        gpu.Generation(start=14.1, seconds=1.0, tokens=600),
    ]
    rows = [{"step": s, "num_tokens": 1000 * s, "completions/mean_length": 50.0} for s in (1, 2, 3)]
    f = gpu.job_figures("grpo", probe, rows, warmup=1, n_fwd=10**9, peak=1000.0)
    assert f["timed_steps"] == 2 and f["tokens_per_step"] == 1000.0
    assert f["train_tokens_per_s"] == round(2000 / 6, 1)  # 8 s of steps, 2 s of it generating
    assert f["gen_tokens_per_s"] == 500.0 and f["gen_time_share"] == 0.25
    assert f["step_tokens_per_s"] == 250.0
    assert f["mfu"] == round(6 * 10**9 * (2000 / 6) / 1e15, 4)


def test_job_figures_for_sft_and_an_unknown_peak():
    probe = gpu.Probe(step_ends={0: 0.0, 1: 2.0, 2: 3.0, 3: 4.5})
    rows = [{"step": s, "num_tokens": t} for s, t in ((1, 300), (2, 700), (3, 1000))]
    f = gpu.job_figures("sft", probe, rows, warmup=1, n_fwd=1, peak=None)
    assert f["train_tokens_per_s"] == 700 / 2.5 and f["mfu"] is None
    assert "gen_tokens_per_s" not in f
    with pytest.raises(ValueError, match="no timed steps"):
        gpu.job_figures("sft", probe, rows, warmup=3, n_fwd=1, peak=None)


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.5),
        ("NVIDIA H200", 989.4),
        ("NVIDIA L40S", 362.1),
        ("NVIDIA L4", 121.0),
        ("Some Future GPU", None),
    ],
)
def test_peak_table(name, peak):
    assert gpu.peak_tflops(name) == peak


def test_published_shapes():
    g, q = gpu.GEMMA3_1B, gpu.QWEN25_1_5B
    assert (g["hidden_size"], g["num_hidden_layers"], g["intermediate_size"]) == (1152, 26, 6912)
    assert (g["num_attention_heads"], g["num_key_value_heads"], g["head_dim"]) == (4, 1, 256)
    assert (g["vocab_size"], g["sliding_window"]) == (262144, 512)
    assert (q["hidden_size"], q["num_hidden_layers"], q["intermediate_size"]) == (1536, 28, 8960)
    assert (q["num_attention_heads"], q["num_key_value_heads"], q["vocab_size"]) == (12, 2, 151936)
    assert q["tie_word_embeddings"] is True


def test_exits_2_without_cuda(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert gpu.main(["--models", "gemma3_1b"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


# ----------------------------------------------------------------------------- CPU smoke run


def tiny_linear_weights(vocab: int) -> int:
    """Linear weights of a 2-layer tiny model (q, k, v, o, gate, up, down) plus the lm_head."""
    from llmscisci_cfg.models import tiny

    h, f, hd = tiny.HIDDEN, tiny.FFN, tiny.HIDDEN // tiny.HEADS
    attn = 2 * h * tiny.HEADS * hd + 2 * h * tiny.KV_HEADS * hd
    return tiny.LAYERS * (attn + 3 * h * f) + vocab * h


def tiny_lora_params(r: int) -> int:
    from llmscisci_cfg.models import tiny

    h, f, kv = tiny.HIDDEN, tiny.FFN, tiny.KV_HEADS * (tiny.HIDDEN // tiny.HEADS)
    pairs = [(h, h), (h, kv), (h, kv), (h, h), (h, f), (h, f), (f, h)]
    return tiny.LAYERS * sum(r * (i + o) for i, o in pairs)


@pytest.mark.slow
@pytest.mark.parametrize("four_bit", [False, True], ids=["float32", "4bit"])
def test_cpu_smoke_run_writes_sane_figures(tmp_path, four_bit):
    from llmscisci_cfg.models.tiny import load_tiny_tokenizer

    out = tmp_path / "out"
    argv = [
        "--cpu-smoke",
        "--peak-tflops",
        "1",
        "--out-dir",
        str(out),
        "--jobs",
        "gen,sft,grpo,dpo",
    ]
    argv += ["--gen-rows", "4"]
    env = {**os.environ, "LLMSCISCI_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "bench.gpu", *argv, *(["--smoke-4bit"] if four_bit else [])]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results_gpu.json").read_text())
    assert results["cpu_smoke"] is True and results["peak_tflops"] == 1.0
    assert results["device"].startswith("CPU") and results["trl_version"]
    assert ("4-bit" in results["settings"]) is four_bit
    n_fwd = tiny_linear_weights(len(load_tiny_tokenizer()) + 256)
    for model in gpu.SHAPES:
        assert results[f"{model}_forward_params"] == n_fwd
        for method in gpu.METHODS:
            p = f"{model}_{method}_"
            tps = results[p + "train_tokens_per_s"]
            assert math.isfinite(tps) and tps > 0
            assert results[p + "timed_steps"] == 1
            assert results[p + "mfu"] == pytest.approx(6 * n_fwd * tps / 1e12, abs=1e-4)
            assert results[p + "peak_mem_gib"] > 0
            # the CPU tensor peak against plan's estimate (+2% to +12% on 2026-11-27)
            assert abs(results[p + "mem_estimate_error"]) <= 0.2, (p, results)
            assert results[p + "lora_params"] == tiny_lora_params(4)
        assert 0 < results[f"{model}_sft_tokens_per_step"] <= 2 * 256  # batch x max_length
        assert results[f"{model}_grpo_gen_tokens_per_s"] > 0
        assert 0 < results[f"{model}_grpo_gen_time_share"] < 1
        assert 0 < results[f"{model}_grpo_completion_mean_length"] <= 8
        assert results[f"{model}_sft_mem_estimate_gib"] > 0  # plan's estimate beside the peak
        assert results[f"{model}_gen4_engine_compiled_tokens_per_s"] > 0
        assert not [k for k in results if k.endswith("_error") and "mem_estimate" not in k]
    md = (out / "RESULTS.md").read_text()
    assert md.count("\n## GPU: CPU") == 1 and md.count("| GRPO QLoRA (baseline settings) |") == 2


def test_section_shows_generation_estimates_failures_and_notes():
    figures = {
        "gemma3_1b_sft_mem_estimate_gib": 9.975,
        "gemma3_1b_sft_mem_estimate_error": 0.05,
        "gemma3_1b_gen16_baseline_tokens_per_s": 356.5,
        "gemma3_1b_gen16_baseline_ms_per_step": 44.88,
        "gemma3_1b_gen16_engine_eager_tokens_per_s": 355.4,
        "gemma3_1b_gen16_engine_compiled_tokens_per_s": 3210.2,
        "gemma3_1b_gen16_engine_compiled_ms_per_step": 4.98,
        "gemma3_1b_gen16_compiled_vs_baseline": 9.0,
        "gemma3_1b_gen16_compile_warmup_s": 87.9,
        "gemma3_1b_grpo_bf16_cb_error": "RuntimeError: boom",
        "notes": ["cut short"],
    }
    section = gpu.render_section(gpu_results(**figures))
    assert "| 10.0 (+5%) |" in section
    assert (
        "| gemma-3-1b-it shape | 16 | 356 (44.88 ms/step) | 355 | 3,210 (4.98 ms/step) | 9.0× | 87.9 s |"
        in section
    )
    assert "GRPO LoRA bf16, TRL continuous batching: RuntimeError: boom" in section
    assert section.rstrip().endswith("- cut short")


def test_unknown_jobs_are_refused(capsys):
    assert gpu.main(["--jobs", "gen,nope"]) == 2
    assert "unknown --jobs ['nope']" in capsys.readouterr().err


def test_every_variant_recipe_validates(tmp_path):
    """Each job's recipe is a valid llmscisci recipe, on the GPU settings."""
    import yaml

    from llmscisci_cfg.recipe.loader import load_recipe_text

    for v in gpu.VARIANTS.values():
        data = gpu.recipe(gpu.SHAPES["gemma3_1b"], v, tmp_path, gpu.gpu_settings())
        recipe = load_recipe_text(yaml.safe_dump(data), f"{v.key}.yaml")
        assert recipe.method.name == v.method
        assert (recipe.model.quantization is not None) is (v.quantize is None)
        assert recipe.model.lora.dropout == v.lora_keys.get("dropout", 0.05)
        assert recipe.train.torch_compile is v.train_keys.get("torch_compile", False)
