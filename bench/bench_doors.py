"""`predict` locally against `predict` through `llmscisci serve`: the same answers, and what the
door costs.

The quickstart's label recipe (`builtin:quickstart/label_tiny`, greedy, structured, 64 new
tokens) on the first 24 sample reports (48 sections), once with the tiny model in-process and
once through `llmscisci serve builtin:tiny` on a loopback port (the task's grammar sent as
``answer_grammar``, 16 requests in flight: the server batches what local `predict` batches,
`generation.batch_size` 16), in interleaved rounds after a warm-up. Every round
asserts that both give byte-for-byte the same ``_raw`` column. The figure is sections per second
of the whole `predict` call, served / local (the served call loads no weights; the server does).
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from bench.side_by_side import side_by_side

ROWS = 24
RECIPE = "builtin:quickstart/label_tiny"


def _predict(out: Path, sets: tuple[str, ...]) -> list[str]:
    from llmscisci_cfg.predict.runner import PredictOptions, predict

    overrides = ("generation.max_new_tokens=64", *sets)  # builtin weights: seed 42 both sides
    predict(RECIPE, overrides, PredictOptions(output=out, limit=ROWS, overwrite=True), echo=_quiet)
    with out.open(newline="", encoding="utf-8") as f:
        return [row[f"{a}_raw"] for row in csv.DictReader(f) for a in ("easy", "difficult")]


def _quiet(*args, **kwargs) -> None:
    pass


def run(repeats: int = 7) -> dict[str, float]:
    from tests.serve_helpers import start, stop

    server = start()
    folder = Path(tempfile.mkdtemp(prefix="bench-doors-"))
    served = (
        "generation.backend=openai",
        f"generation.base_url={server.url}",
        "generation.model=builtin:tiny",
        "generation.max_concurrency=16",  # as many in flight as local generates together
    )
    try:
        local_s, served_s = side_by_side(
            lambda: _predict(folder / "local.csv", ()),
            lambda: _predict(folder / "served.csv", served),
            repeats,
            check=lambda a, b: _same(a, b),
        )
    finally:
        stop(server)
    sections = 2 * ROWS
    return {
        "predict_local_sections_per_s": round(sections / local_s, 2),
        "predict_served_sections_per_s": round(sections / served_s, 2),
        "predict_served_vs_local": round(local_s / served_s, 2),
    }


def _same(local: list[str], served: list[str]) -> None:
    if local != served:
        raise AssertionError("predict through serve answered differently from local predict")


if __name__ == "__main__":
    print(run())
