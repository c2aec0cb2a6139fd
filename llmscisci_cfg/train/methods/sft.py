"""SFT: supervised fine-tuning on prompt + ``<think>TRACE</think><label>GOLD</label>``
completions (TRL's SFTTrainer), the loss on the assistant turn.

Rows: ``prompt`` and ``completion`` (one assistant message written from the gold label and,
with ``data.traces``, the example's reasoning trace). A training example without a trace is
dropped (``missing: drop``, counted as ``no_trace``) or gets an empty think block; a held-out
one never is: evaluation reads only its prompt and gold label. The report counts the examples
with and without a trace (``traces``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.data.examples import load_traces
from llmscisci_cfg.data.rows import Example, MessagesFn, Row, assistant, base_row
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import Recipe, SFTMethod
from llmscisci_cfg.task.labels import shown
from llmscisci_cfg.train.methods.descriptor import MemoryFactors, TrainingMethod

NO_TRACE = "no_trace"


def config_kwargs(recipe: Recipe, device: str) -> dict[str, Any]:
    """`trl.SFTConfig` kwargs: prompt + completion conversations, loss on the assistant turn."""
    m = recipe.method
    assert isinstance(m, SFTMethod)
    return {
        "max_length": m.max_length,
        "assistant_only_loss": m.assistant_only_loss,
        "packing": m.packing,
        "packing_strategy": "bfd",  # whole examples; checks refuse nothing else
        "padding_free": m.padding_free,
    }


@dataclass
class Rows:
    """SFT's rows of one build (the trace file read once)."""

    job: Job
    messages: MessagesFn
    traces: dict[tuple[str, str], str] | None = None  # None: the recipe has no trace file

    def rows(self, ex: Example, held: bool, counts: Counter) -> Iterable[Row | str]:
        if ex.gold is None:
            raise UserError(
                f"{ex.where}: id {shown(ex.id)}: method sft writes the gold label into the "
                "completion, but the recipe declares no label column; set data.columns.label"
            )
        spec = self.job.recipe.data.traces
        trace = "" if self.traces is None else self.traces.get((ex.id, ex.aspect))
        if trace is None and spec is not None and spec.missing == "drop" and not held:
            return [NO_TRACE]
        if self.traces is not None:
            counts["with_trace"] += bool(trace)
            counts["without_trace"] += not trace
        completion = self.job.task.completion(trace or "", ex.gold, ex.aspect)
        return [{**base_row(ex, self.messages), "completion": assistant(completion)}]


def maker(job: Job, messages: MessagesFn) -> Rows:
    traces = load_traces(job) if job.recipe.data.traces is not None else None
    return Rows(job, messages, traces)


METHOD = TrainingMethod(
    name="sft",
    schema=SFTMethod,
    config_class="trl.SFTConfig",
    trainer_class="trl.SFTTrainer",
    config_kwargs=config_kwargs,
    trl_defaults={
        "learning_rate": 2e-05,
        "remove_unused_columns": True,
        "max_length": 1024,
        "assistant_only_loss": False,
        "packing": False,
        "packing_strategy": "bfd",
        "padding_free": False,
    },
    maker=maker,
    answer_columns=("completion",),
    counts="traces",
    memory=MemoryFactors(),
    hyperparameters=("max_length", "packing", "padding_free"),
)
