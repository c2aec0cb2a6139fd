"""Run every CPU benchmark and record the figures: ``python -m bench`` (or ``make bench``).

Each benchmark module measures a ratio against a baseline run side by side in the same
script; absolute times are context only. Results go to bench/results.json (flat keys) and
bench/RESULTS.md (a table regenerated from the JSON; the GPU section is kept if present).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

from bench import (
    bench_coverage,
    bench_data_scale,
    bench_doors,
    bench_generate,
    bench_memory,
    bench_preprocess,
    bench_quickstart,
    bench_rewards,
    bench_rollouts,
    bench_runner,
    bench_score,
    bench_serve,
    bench_validate,
)

HERE = Path(__file__).resolve().parent

# key → (goal text, predicate on the measured value)
GOALS = {
    "validate_seconds": ("≤ 0.5 s median, fresh process", lambda v: v <= 0.5),
    "validate_vs_trl_import_ratio": (
        "≥ 10× faster than `from trl import GRPOTrainer`",
        lambda v: v >= 10,
    ),
    "rewards_per_second": (
        "≥ 100,000 completions/s (format + stepwise_label + hamming)",
        lambda v: v >= 100_000,
    ),
    "rewards_speedup_vs_naive": ("≥ 20× the notebook-style baseline", lambda v: v >= 20),
    "train_overhead_ratio_sft": (
        "train() time vs hand-written TRL ≤ 1.03, identical losses",
        lambda v: v <= 1.03,
    ),
    "train_overhead_ratio_grpo": (
        "train() time vs hand-written TRL ≤ 1.03, identical losses",
        lambda v: v <= 1.03,
    ),
    "preprocess_cache_ratio": ("second preprocess ≤ 0.10 of the first", lambda v: v <= 0.10),
    "data_scale_seconds_100k": (
        "`preprocess` of 100,000 rows (33 MB) ≤ 60 s wall on 2 cores, imports included",
        lambda v: v <= 60,
    ),
    "data_scale_peak_gb_100k": (
        "… with ≤ 1.5 GB peak resident memory (RSS of the process and its workers, summed)",
        lambda v: v <= 1.5,
    ),
    "data_scale_speedup_100k": (
        "≥ 4.7× the data stage before issue 21, side by side (284 s → 60 s), same examples",
        lambda v: v >= 4.7,
    ),
    "data_scale_linearity_1m": (
        "build time per row at 1M rows ÷ at 100k rows ≤ 1.25 (grows linearly)",
        lambda v: v <= 1.25,
    ),
    "quickstart_seconds": ("SFT then GRPO (plus evals) ≤ 90 s wall", lambda v: v <= 90),
    "generate_engine_vs_baseline": (
        "engine ≥ 1.0× the eval path it replaced, identical greedy outputs",
        lambda v: v >= 1.0,
    ),
    "rollouts_merged_vs_policy": (
        "GRPO rollouts from the merged copy ≥ 1.0× from the LoRA policy, identical greedy ids",
        lambda v: v >= 1.0,
    ),
    "predict_served_vs_local": (
        "`predict` through `llmscisci serve` answers byte for byte as local; ≥ 0.5× its "
        "sections/s (client and server share the cores; four runs of 7 rounds: 0.57 to 0.60, the last one as recorded)",
        lambda v: v >= 0.5,
    ),
    "score_100k_seconds": (
        "`score`: 100,000 rows, 2 columns, 1,000 BCa resamples, in ≤ 10 s",
        lambda v: v <= 10,
    ),
    "score_vs_sklearn_ratio": (
        "`score` ≥ 5× scikit-learn in a bootstrap loop (same table, same resamples, equal points)",
        lambda v: v >= 5,
    ),
    "serve_concurrent_vs_sequential": (
        "8 concurrent clients ≥ 2× the requests/s of 8 sequential ones",
        lambda v: v >= 2.0,
    ),
    **{
        f"memory_estimate_error_{job}": (
            f"`plan`'s peak within ±20% of the measured CPU peak ({what})",
            lambda v: abs(v) <= 0.20,
        )
        for job, what in (
            ("sft", "SFT"),
            ("sft_nodrop", "SFT, LoRA dropout 0"),
            ("dpo", "DPO"),
            ("grpo", "GRPO"),
            ("sft_bf16", "SFT, bf16 autocast"),
            ("sft_nodrop_bf16", "SFT, LoRA dropout 0, bf16 autocast"),
            ("dpo_bf16", "DPO, bf16 autocast"),
            ("grpo_bf16", "GRPO, bf16 autocast"),
        )
    },
}

SUITES = {
    "validate": bench_validate.run,
    "rewards": bench_rewards.figures,
    "runner": bench_runner.run,
    "preprocess": bench_preprocess.run,
    "data_scale": bench_data_scale.suite,
    "quickstart": bench_quickstart.run,
    "generate": bench_generate.run,
    "rollouts": bench_rollouts.run,
    "serve": bench_serve.run,
    "doors": bench_doors.run,
    "memory": bench_memory.run,
    "score": bench_score.run,
    "coverage": bench_coverage.run,
}


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


META = ("machine", "date", "dates")


def _dates(results: dict) -> str:
    """When each suite last ran (``dates``; suites from before it was kept: ``date``)."""
    dates = {name: results.get("dates", {}).get(name, results.get("date")) for name in SUITES}
    by_day: dict[str, list[str]] = {}
    for name, day in dates.items():
        if day:  # a suite never run has no figures either
            by_day.setdefault(day, []).append(name)
    return "; ".join(f"{day} ({', '.join(names)})" for day, names in sorted(by_day.items()))


def write_markdown(results: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Measured by `python -m bench` on {results['machine']}; suites run on {_dates(results)}.",
        "Timings are medians over repeated runs, interleaved with their baseline in the same "
        "script; memory figures come from one run each (two runs gave the same bytes).",
        "",
        "| figure | goal | measured | met |",
        "|---|---|---|---|",
    ]
    for key, (goal, ok) in GOALS.items():
        if key in results:
            value = results[key]
            lines.append(f"| `{key}` | {goal} | {value:,} | {'yes' if ok(value) else '**no**'} |")
    context = {
        k: v for k, v in results.items() if k not in GOALS and k not in META and "coverage" not in k
    }
    lines += coverage_table(results)
    if context:
        lines += ["", "Context (absolute figures on this machine):", ""]
        lines += [f"- `{k}`: {v}" for k, v in sorted(context.items())]
    return "\n".join(lines) + "\n"


COVERAGE_GOAL = (0.93, 0.97)


def coverage_table(results: dict) -> list[str]:
    """The coverage study (`bench.bench_coverage`) as a table: population × metric rows, size
    × method columns; figures outside the goal in bold."""
    if "coverage_sets" not in results:
        return []
    sizes = bench_coverage.SIZES
    lo, hi = COVERAGE_GOAL
    lines = [
        "",
        f"## Coverage of the 95% intervals (goal: {lo:.0%}–{hi:.0%})",
        "",
        f"`python -m bench.bench_coverage`: {results['coverage_sets']:,} simulated test sets per "
        f"population and size, {results['coverage_resamples']:,} bootstrap resamples over rows "
        "each, scored as `llmscisci score` scores them; a cell is the share of test sets whose "
        "interval holds the population's true value (Monte Carlo error about ±1.4 points). "
        "Populations: `single`, 3 categories with SciCite's shares and 5% invalid answers; "
        "`multi`, 5 categories with prevalences 0.5 to 0.05 and 5% invalid answers "
        "(bench/bench_coverage.py).",
        "",
        "| population | metric | truth | "
        + " | ".join(f"n={n} BCa | n={n} percentile" for n in sizes)
        + " |",
        "|---|---|---:|" + "---:|" * (2 * len(sizes)),
    ]
    for pop in bench_coverage.POPULATIONS:
        for metric in bench_coverage.METRICS:
            cells = []
            for n in sizes:
                for method in ("bca", "percentile"):
                    v = results.get(f"coverage_{pop}_{metric}_n{n}_{method}")
                    text = "–" if v is None else f"{v:.1%}"
                    cells.append(text if v is None or lo <= v <= hi else f"**{text}**")
            truth = results.get(f"coverage_{pop}_{metric}_truth")
            lines.append(f"| {pop} | {metric} | {truth} | " + " | ".join(cells) + " |")
    missing = [
        f"{pop} n={n}: {results[f'coverage_{pop}_n{n}_sets_missing_a_category']:.1%}"
        for pop in bench_coverage.POPULATIONS
        for n in sizes
        if results.get(f"coverage_{pop}_n{n}_sets_missing_a_category")
    ]
    if missing:
        lines += [
            "",
            "Test sets that miss a category altogether (its macro average then runs over the "
            "others, an estimand that differs from the population's): " + "; ".join(missing) + ".",
        ]
    for method, name in (("bca", "BCa"), ("percentile", "Percentile")):
        outside = [
            f"{pop} {metric} n={n} ({results[key]:.1%})"
            for pop in bench_coverage.POPULATIONS
            for metric in bench_coverage.METRICS
            for n in sizes
            if (key := f"coverage_{pop}_{metric}_n{n}_{method}") in results
            and not lo <= results[key] <= hi
        ]
        lines += ["", f"{name} intervals outside the goal: {', '.join(outside) or 'none'}."]
    lines += [
        "",
        "Reports and `score` use BCa intervals (`eval.stats.DEFAULT_METHOD`; `score --interval "
        "percentile` gives the other). The figures are seeded: a rerun with the same versions "
        "gives the same table; what varies between seeds is the Monte Carlo error above.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the CPU benchmarks and record them.")
    parser.add_argument(
        "--only", choices=sorted(SUITES), action="append", help="Run only these suites."
    )
    args = parser.parse_args()
    path = HERE / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.only or SUITES:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        figures = SUITES[name]()
        print(json.dumps(figures, indent=2), f"({time.perf_counter() - start:.0f} s)", flush=True)
        results.update(figures)
        results.setdefault("dates", {})[name] = datetime.date.today().isoformat()
    results["machine"] = machine()
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md = HERE / "RESULTS.md"
    gpu = ""
    if md.exists() and "\n## GPU" in md.read_text():
        gpu = "\n## GPU" + md.read_text().split("\n## GPU", 1)[1]
    md.write_text(write_markdown(results) + gpu)
    print(f"wrote {path} and {md}")


if __name__ == "__main__":
    main()
