"""Loss and reward curves of a run, drawn from ``metrics.jsonl`` into ``plots/`` (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmscisci_cfg.runs.rundir import PLOT_FILES, PLOTS, read_metrics

LOSS_KEYS = ("loss", "eval_loss")


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` over the rows that have a number for it."""
    pts = [
        (r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r
    ]
    return [s for s, _ in pts], [float(v) for _, v in pts]


def reward_keys(rows: list[dict[str, Any]]) -> list[str]:
    """``reward`` and each ``rewards/<name>/mean`` present in the log, in first-seen order."""
    keys: dict[str, None] = {}
    for r in rows:
        for k in r:
            if k == "reward" or (k.startswith("rewards/") and k.endswith("/mean")):
                keys.setdefault(k)
    return list(keys)


def write_plots(run_dir: Path) -> list[Path]:
    """Write ``loss.png`` and (GRPO) ``rewards.png``; return the files written."""
    rows = read_metrics(run_dir)
    out = run_dir / PLOTS
    written = []
    loss, rewards = PLOT_FILES  # the names the run's inventory lists
    for name, keys, ylabel in (
        (loss, [k for k in LOSS_KEYS if series(rows, k)[0]], "loss"),
        (rewards, reward_keys(rows), "mean reward"),
    ):
        if keys:
            written.append(_plot(rows, keys, ylabel, out / name))
    return written


def _plot(rows: list[dict[str, Any]], keys: list[str], ylabel: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key in keys:
        steps, values = series(rows, key)
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
