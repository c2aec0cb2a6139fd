"""DPO: direct preference optimisation on chosen/rejected answers (TRL's DPOTrainer).

Rows: ``prompt``, ``chosen`` and ``rejected`` (one assistant message each), from the
``data.columns.chosen``/``rejected`` columns, or with ``data.pairs`` the best- and
worst-scoring of several answer columns scored against gold (`choose_pair`). A pair without
two usable answers is dropped and counted: ``empty_answer``, ``identical_pair``,
``tied_answers``. With LoRA the reference model is the base with the adapter switched off;
without, a second copy of the start weights.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from llmscisci_cfg.data.rows import Example, MessagesFn, Row, assistant, base_row
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import DPOMethod, Recipe
from llmscisci_cfg.task.kinds import LabelKind, read_answer
from llmscisci_cfg.train.methods.descriptor import MemoryFactors, TrainingMethod

EMPTY_ANSWER = "empty_answer"
IDENTICAL_PAIR = "identical_pair"
TIED_ANSWERS = "tied_answers"


def config_kwargs(recipe: Recipe, device: str) -> dict[str, Any]:
    """`trl.DPOConfig` kwargs."""
    m = recipe.method
    assert isinstance(m, DPOMethod)
    return {
        "beta": m.beta,
        "loss_type": [m.loss_type],
        "label_smoothing": m.label_smoothing,
        "max_length": m.max_length,
        "padding_free": m.padding_free,
    }


def choose_pair(
    answers: tuple[str, ...], gold: Any, kind: LabelKind, rule: str
) -> tuple[str, str] | str:
    """``(chosen, rejected)``: the best- and worst-scoring answers against ``gold``, or the
    reason there is no pair (``tied_answers``: every answer scores the same).

    ``hamming_to_gold`` scores the kind's correctness (1 − Hamming loss for a one-hot list),
    ``exact_match`` 1 or 0; an answer without a valid label (or one that breaks the task's
    label constraints) scores -1 (below any valid one). Empty answers take no part.

    >>> from llmscisci_cfg.task.kinds import MultiLabel
    >>> kind = MultiLabel.plain(2)
    >>> choose_pair(("<think/></think><label>[1, 0]</label>", "x"), [1, 0], kind, "exact_match")[1]
    'x'
    """
    scored = []
    for text in answers:
        if not text:
            continue
        label = read_answer(text, kind).value
        if label is None:
            score = -1.0
        elif rule == "exact_match":
            score = float(list(label) == list(gold) if isinstance(gold, list) else label == gold)
        else:
            score = kind.score(gold, label)
        scored.append((score, text))
    if len(scored) < 2:
        return EMPTY_ANSWER
    best, worst = max(scored, key=lambda s: s[0]), min(scored, key=lambda s: s[0])
    if best[0] == worst[0]:
        return TIED_ANSWERS
    return best[1], worst[1]


@dataclass
class Rows:
    """DPO's rows: one pair per example, or the reason there is none."""

    job: Job
    messages: MessagesFn

    def rows(self, ex: Example, held: bool, counts: Counter) -> Iterable[Row | str]:
        pairs = self.job.recipe.data.pairs
        if pairs is not None and ex.answers is not None:
            kind = self.job.task.label_kind(ex.aspect)
            pair = choose_pair(ex.answers, ex.gold, kind, pairs.choose_by)
            if isinstance(pair, str):
                return [pair]
            ex = replace(ex, chosen=pair[0], rejected=pair[1])
        if not ex.chosen or not ex.rejected:
            return [EMPTY_ANSWER]
        if ex.chosen == ex.rejected:
            return [IDENTICAL_PAIR]
        row = base_row(ex, self.messages)
        return [row | {"chosen": assistant(ex.chosen), "rejected": assistant(ex.rejected)}]


METHOD = TrainingMethod(
    name="dpo",
    schema=DPOMethod,
    config_class="trl.DPOConfig",
    trainer_class="trl.DPOTrainer",
    config_kwargs=config_kwargs,
    trl_defaults={
        "learning_rate": 1e-06,
        "remove_unused_columns": True,
        "max_length": 1024,
        "beta": 0.1,
        "loss_type": ["sigmoid"],
        "label_smoothing": 0.0,
        "padding_free": False,
    },
    maker=Rows,
    answer_columns=("chosen", "rejected"),
    reference="always",
    ref_model_arg=True,
    # chosen and rejected go through one forward; DPOConfig.disable_dropout is on by default
    memory=MemoryFactors(sequences=2, dropout=False),
    hyperparameters=("max_length", "beta", "loss_type", "padding_free"),
)
