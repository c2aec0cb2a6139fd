"""`llmscisci predict`: a recipe's task over every row of its table, through the engine.

Reads the whole table (no split), builds one `predict.items.Item` per row and aspect,
generates in chunks (appending each finished section to the journal, so ``--resume`` redoes
nothing), and at the end writes the output atomically: every input row and column in input
order plus ``<aspect>_pred`` (the parsed answer), ``<aspect>_raw`` (the completion),
``<aspect>_reason`` (why there is no prediction; empty when there is one), ``<aspect>_truncated``
(and ``<aspect>_shots`` with few-shot examples) — or, for a rationale task, the traces JSONL
that ``data.traces`` reads — and ``OUTPUT.report.json``. With ``launch.num_processes > 1`` the
rows are sharded across processes through ``accelerate launch`` and this process merges them.

The steps, one module each: `output` (where, and whether it may be written or resumed),
`table` (the input's columns), `settings` (what a resumed run must share), `share` (one
process's sections into its journal), `launch` (several processes), `merge` and `report`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import output as policy
from llmscisci_cfg.predict.launch import launch, rank_and_world
from llmscisci_cfg.predict.merge import finish
from llmscisci_cfg.predict.options import PredictOptions, PredictResult
from llmscisci_cfg.predict.settings import check_journals
from llmscisci_cfg.predict.share import predict_share
from llmscisci_cfg.predict.table import read_input

__all__ = ["PredictOptions", "PredictResult", "predict"]


def predict(
    recipe_ref: str,
    overrides: tuple[str, ...],
    opts: PredictOptions,
    echo: Callable[[str], None] = print,
) -> PredictResult | None:
    """Predict, or (a worker of a sharded run) predict this process's share; see the module."""
    from llmscisci_cfg.recipe.loader import load_job

    job = load_job(recipe_ref, overrides)
    if job.method != "predict":
        raise UserError(
            f"{recipe_ref}: method is {job.method}; `llmscisci predict` needs method: "
            "{name: predict} (a training recipe runs with `llmscisci run`)"
        )
    output = Path(opts.output) if opts.output else policy.default_output(job)
    policy.check_output(job, output)
    rank, world = rank_and_world()
    worker = opts.in_process and world > 1
    inputs = read_input(job, opts.limit)
    if inputs.unlabelled and not worker:
        echo(
            f"method.rows: labelled: {len(inputs.table.rows)} rows with a gold label, "
            f"{inputs.unlabelled} without one left out"
        )
    if not worker:
        policy.prepare(output, opts)
        finished = policy.finished(job, output, opts, inputs.rows)
        if finished is not None:
            echo(f"{output}: already complete ({finished.report['rows']} rows); nothing to do")
            return finished
    check_journals(job, output)
    if job.recipe.launch.num_processes > 1 and not opts.in_process:
        launch(job, recipe_ref, overrides, output, opts, echo)
    else:
        predict_share(job, inputs, output, opts, rank, world, echo)
        if worker:
            return None
    return finish(job, inputs, output, opts, echo)
