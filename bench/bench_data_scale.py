"""The data stage at corpus scale: `preprocess` of 10k, 100k (and 1M) rows, against the data
stage as it was before issue 21, side by side.

The corpus repeats the shipped sample's reports (``doi, title, easy, difficult, y_easy_gpt4,
y_diff_gpt4``) with fresh ids, each section made unique by its row number (so nothing can be
remembered from one copy to the next): about 300 bytes a row, 30 MB for 100,000 rows. The
recipe is the flagship ``builtin:grpo_gemma`` on the tiny model and template (offline):
``data.clean: {}`` and the 95th-percentile length filter, as it ships.

Each build runs in a fresh subprocess (imports, tokenizer, build, save to an empty cache: what
``llmscisci preprocess`` does); the parent samples the resident memory of that process and of
every process it forks (the examples pass runs in one forked process per CPU) every 20 ms and
keeps the peak of the sum (`memory`): RSS, the goal's figure and the largest (a forked
worker's copy of its parent counts again), PSS (shared pages split between the processes),
and PSS split into the processes' own allocations and mapped Arrow files. The baseline is the same script over the package as it was at
`BEFORE` (unpacked with ``git archive``), run just before the candidate on the same corpus; both
must report the same splits, drops and test-set sha256 (the same examples).

    python -m bench.bench_data_scale [--sizes 10000,100000] [--million] [--no-baseline]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "6eab419"  # the last commit before the streaming data stage
SETS = ["model.name_or_path=builtin:tiny", "template.name=tiny"]
COLUMNS = ["doi", "title", "easy", "difficult", "y_easy_gpt4", "y_diff_gpt4"]

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import llmscisci_cfg
from llmscisci_cfg.recipe.loader import load_job
from llmscisci_cfg.data.preprocess import build_dataset
job = load_job("builtin:grpo_gemma", sys.argv[1:])
tokenizer = job.tokenizer()
try:  # the method's rows, passed by the caller since issue 22 (not before)
    from llmscisci_cfg.train import methods
    rows = (methods.get(job.method),)
except ImportError:
    rows = ()
ready = time.perf_counter()
dataset, report = build_dataset(job, *rows, tokenizer=tokenizer)
done = time.perf_counter()
print(json.dumps({
    "package": llmscisci_cfg.__file__,
    "build_seconds": done - ready,
    "setup_seconds": ready - start,
    "rows": report.rows,
    "splits": report.splits,
    "dropped": report.dropped,
    "test_set_sha256": report.test_set_sha256,
    "token_lengths": {k: v for k, v in report.token_lengths.items()},
}))
"""


def write_corpus(rows: int, path: Path) -> int:
    """``rows`` reports from the shipped sample, fresh ids, every section unique; bytes written."""
    from llmscisci_cfg.resources import root

    sample = root("assets") / "sample" / "reports.csv"
    with sample.open(newline="", encoding="utf-8") as f:
        reports = list(csv.DictReader(f))
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for i in range(rows):
            r = reports[i % len(reports)]
            mark = f" (Report {i}.)"
            easy, difficult = (r[a] + mark if r[a].strip() else r[a] for a in ("easy", "difficult"))
            out.writerow(
                [f"10.9999/bench.{i:07d}", r["title"], easy, difficult]
                + [r["y_easy_gpt4"], r["y_diff_gpt4"]]
            )
    return path.stat().st_size


def unpack_before(into: Path) -> Path:
    """The package as it was at `BEFORE`, with its recipes and templates where the installed
    package keeps them; the folder to put first on PYTHONPATH."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "before.tar"
    with archive.open("wb") as f:
        subprocess.run(
            ["git", "-C", str(REPO), "archive", BEFORE, "llmscisci_cfg", "recipes", "templates"],
            stdout=f,
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    for kind in ("recipes", "templates"):
        shutil.move(str(into / kind), str(into / "llmscisci_cfg" / kind))
        (into / "llmscisci_cfg" / kind / "__init__.py").touch()
    return into


def memory(pid: int) -> dict[str, int]:
    """Resident bytes of one process (Linux ``smaps_rollup``): ``rss``, ``pss`` (pages shared
    with another process count by share: a forked worker's copy of its parent is not counted
    twice), ``pss_anon`` (its own allocations) and ``pss_file`` (mapped files: the Arrow files,
    cached by the kernel and given back when memory is short). Elsewhere ``rss`` only."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            found = {}
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss", "Pss_Anon", "Pss_File"):
                    found[key.lower()] = int(value.split()[0]) * 1024
            return found
    except OSError:
        import psutil

        return {"rss": psutil.Process(pid).memory_info().rss}


def measure(corpus: Path, cache: Path, pythonpath: Path | None = None) -> dict:
    """One build in a fresh process: its report, wall seconds and the peaks of the resident
    memory of the process and its workers together (`memory`, summed over the processes)."""
    import psutil

    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    sets = [*SETS, f"data.source.path={corpus}", f"data.cache_dir={cache}"]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    child = subprocess.Popen(  # cwd: not the checkout, whose package `-c` would import first
        [sys.executable, "-c", CHILD, *sets],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
        cwd=cache.parent,
    )
    peak: dict[str, int] = {}

    def sample() -> None:
        try:
            root = psutil.Process(child.pid)
            while child.poll() is None:
                total: dict[str, int] = {}
                for p in [root, *root.children(recursive=True)]:
                    try:
                        for key, value in memory(p.pid).items():
                            total[key] = total.get(key, 0) + value
                    except (OSError, psutil.Error, ValueError):
                        pass
                for key, value in total.items():
                    peak[key] = max(peak.get(key, 0), value)
                time.sleep(0.02)
        except psutil.Error:
            pass

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, _ = child.communicate()
    wall = time.perf_counter() - start
    watcher.join()
    if child.returncode != 0:
        raise RuntimeError(f"the build failed (exit {child.returncode})")
    found = json.loads(out.strip().splitlines()[-1])
    return found | {"wall_seconds": wall, "peak": peak, "load_before": load}


def _same(base: dict, cand: dict) -> None:
    """The baseline ran the old package, and both built the same examples."""
    assert base["package"] != cand["package"], "the baseline ran the current package"
    for key in ("rows", "splits", "dropped", "test_set_sha256", "token_lengths"):
        assert base[key] == cand[key], f"{key}: before {base[key]!r}, now {cand[key]!r}"


def _label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows >= 1_000_000 else f"{rows // 1000}k"


def run(sizes=(10_000, 100_000), million: bool = False, baseline: bool = True) -> dict:
    """The figures (see the module docstring); 1M rows only with ``million`` (about 10
    minutes here, 6 GB of disk for a moment), with no baseline at that size."""
    sizes = [*sizes, *([1_000_000] if million else [])]
    figures: dict = {
        "data_scale_workers": os.cpu_count(),
        "data_scale_recipe": "builtin:grpo_gemma (tiny model, clean, 95th-percentile drop)",
    }
    with tempfile.TemporaryDirectory(prefix="llmscisci-bench-data-") as tmp:
        tmp = Path(tmp)
        before = unpack_before(tmp / "before") if baseline else None
        for rows in sizes:
            label = _label(rows)
            corpus = tmp / f"corpus-{label}.csv"
            size = write_corpus(rows, corpus)
            figures[f"data_scale_file_mb_{label}"] = round(size / 1e6, 1)
            base = None
            if before is not None and rows <= 100_000:
                base = measure(corpus, tmp / f"cache-before-{label}", before)
                shutil.rmtree(tmp / f"cache-before-{label}", ignore_errors=True)
            cand = measure(corpus, tmp / f"cache-{label}")
            shutil.rmtree(tmp / f"cache-{label}", ignore_errors=True)
            figures[f"data_scale_seconds_{label}"] = round(cand["wall_seconds"], 1)
            figures[f"data_scale_build_seconds_{label}"] = round(cand["build_seconds"], 1)
            for key, value in cand["peak"].items():  # rss is the goal's figure: the largest
                name = "peak_gb" if key == "rss" else f"peak_{key}_gb"
                figures[f"data_scale_{name}_{label}"] = round(value / 1e9, 3)
            figures[f"data_scale_examples_{label}"] = sum(cand["splits"].values())
            figures[f"data_scale_load_avg_{label}"] = round(cand["load_before"], 1)
            if base is not None:
                _same(base, cand)
                figures[f"data_scale_before_seconds_{label}"] = round(base["wall_seconds"], 1)
                for key, value in base["peak"].items():
                    name = "peak_gb" if key == "rss" else f"peak_{key}_gb"
                    figures[f"data_scale_before_{name}_{label}"] = round(value / 1e9, 3)
                figures[f"data_scale_speedup_{label}"] = round(
                    base["wall_seconds"] / cand["wall_seconds"], 2
                )
                figures[f"data_scale_memory_ratio_{label}"] = round(
                    base["peak"]["rss"] / cand["peak"]["rss"], 2
                )
            corpus.unlink()
    per_row = {
        k: figures[f"data_scale_build_seconds_{_label(k)}"] / k for k in sizes if k >= 100_000
    }
    if 1_000_000 in per_row:
        figures["data_scale_linearity_1m"] = round(per_row[1_000_000] / per_row[100_000], 2)
    return figures


MILLION_ENV = "LLMSCISCI_BENCH_MILLION"


def suite() -> dict:
    """``python -m bench``'s entry: 10k and 100k rows with the baseline; 1M rows too when
    ``$LLMSCISCI_BENCH_MILLION=1``."""
    return run(million=os.environ.get(MILLION_ENV) == "1")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--million", action="store_true", help="Also 1,000,000 rows (slow).")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    print(json.dumps(run(sizes, args.million, not args.no_baseline), indent=2))
