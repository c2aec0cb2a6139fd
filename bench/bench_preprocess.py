"""Dataset cache: a second `build_dataset` of the same recipe against the first (cold) one.

Both calls are what `llmscisci preprocess` does after its imports: load the tokenizer, hash
the source, then build (tokenize, length-filter, split, save) or load the cached copy. Each
repeat uses a fresh cache directory, so every first call is a real cold build.

    python -m bench.bench_preprocess [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from llmscisci_cfg.data.preprocess import build_dataset
from llmscisci_cfg.recipe.loader import load_job
from llmscisci_cfg.train import methods

RECIPE = "builtin:grpo_gemma"
OFFLINE = ["model.name_or_path=builtin:tiny", "template.name=tiny"]
MLRC = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "mlrc"
    / "ReScience_ML_repro_challenge_alpha.csv"
)


def overrides() -> tuple[list[str], str]:
    """The real MLRC reports (long, messy texts; no labels) when ../shared is here, else the sample."""
    if MLRC.is_file():
        unlabelled = ["data.columns.label=null", "rewards=[{name: format}]"]
        return [f"data.source.path={MLRC}", *unlabelled, *OFFLINE], "MLRC CSV (70 reports)"
    return ["data.source.path=builtin:sample", *OFFLINE], "shipped sample (120 reports)"


def _timed_build(recipe) -> tuple[float, bool]:
    start = time.perf_counter()
    _, report = build_dataset(recipe, methods.get(recipe.method))
    return time.perf_counter() - start, report.cache_hit


def run(repeats: int = 5) -> dict[str, float]:
    """Median of second/first over ``repeats`` fresh caches (imports warmed beforehand)."""
    sets, data = overrides()
    old = os.environ.get("LLMSCISCI_CACHE")
    firsts, seconds = [], []
    try:
        for i in range(repeats + 1):
            with tempfile.TemporaryDirectory() as cache:
                os.environ["LLMSCISCI_CACHE"] = cache
                recipe = load_job(RECIPE, sets)
                first, hit1 = _timed_build(recipe)
                second, hit2 = _timed_build(recipe)
                assert not hit1 and hit2, "expected a cold build then a cache hit"
                if i:  # the first round only warms imports
                    firsts.append(first)
                    seconds.append(second)
    finally:
        if old is None:
            os.environ.pop("LLMSCISCI_CACHE", None)
        else:
            os.environ["LLMSCISCI_CACHE"] = old
    ratios = [s / f for s, f in zip(seconds, firsts, strict=True)]
    return {
        "preprocess_cache_ratio": round(statistics.median(ratios), 3),
        "preprocess_first_seconds": round(statistics.median(firsts), 3),
        "preprocess_cached_seconds": round(statistics.median(seconds), 3),
        "preprocess_data": data,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    print(run(parser.parse_args().repeats))
