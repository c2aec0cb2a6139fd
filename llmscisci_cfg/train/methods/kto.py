"""KTO: Kahneman-Tversky optimisation on unpaired answers (TRL's KTOTrainer).

What the labelling workflow leaves behind is unpaired: several models' answers to each
section, each right or wrong against the gold label. Every non-empty answer of the recipe's
``method.answers`` columns becomes one row: ``prompt``, ``completion`` (the answer, one
assistant message) and ``label``: desirable (True) when the answer's label, read with the
task's answer kind, equals gold exactly; undesirable (False) otherwise, a label that does not
parse or breaks the task's label constraints included. An empty answer is dropped and counted
(``empty_answer``). A held-out example is one row, its gold answer written as SFT writes it
(the length filter measures no model's answer there), so eval scores each section once. The report counts the desirable and undesirable training rows
(``answers``).

TRL estimates the KL term from the batch's other answers (``loss_type: kto``: each row's prompt
with the previous row's answer): it samples in order and needs a batch of two or more (checked
when the recipe loads). The answers to one section are built side by side, so the training
rows are shuffled once with the seed (`TrainingMethod.shuffle`): otherwise about half of those
pairs would be an answer to the same prompt. With LoRA the
reference model is the base with the adapter switched off; without, a second copy of the start
weights.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.data.rows import Example, MessagesFn, Row, assistant, base_row
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import KTOMethod, Recipe
from llmscisci_cfg.task.kinds import LabelKind, read_answer
from llmscisci_cfg.task.labels import shown
from llmscisci_cfg.train.methods.descriptor import MemoryFactors, TrainingMethod

EMPTY_ANSWER = "empty_answer"


def config_kwargs(recipe: Recipe, device: str) -> dict[str, Any]:
    """`trl.KTOConfig` kwargs."""
    m = recipe.method
    assert isinstance(m, KTOMethod)
    return {
        "beta": m.beta,
        "loss_type": m.loss_type,
        "desirable_weight": m.desirable_weight,
        "undesirable_weight": m.undesirable_weight,
        "max_length": m.max_length,
    }


def desirable(answer: str, gold: Any, kind: LabelKind) -> bool:
    """Whether ``answer``'s label equals ``gold`` exactly (an answer without a valid label is
    not desirable).

    >>> from llmscisci_cfg.task.kinds import MultiLabel
    >>> kind = MultiLabel.plain(2)
    >>> desirable("<think>x</think><label>[1, 0]</label>", [1, 0], kind)
    True
    >>> desirable("<think>x</think><label>[1, 1]</label>", [1, 0], kind), desirable("", [1, 0], kind)
    (False, False)
    """
    label = read_answer(answer, kind).value
    return label is not None and kind.score(gold, label) == 1.0


@dataclass
class Rows:
    """KTO's rows: one per non-empty answer (one per held-out example)."""

    job: Job
    messages: MessagesFn

    def rows(self, ex: Example, held: bool, counts: Counter) -> Iterable[Row | str]:
        if ex.gold is None:
            raise UserError(
                f"{ex.where}: id {shown(ex.id)}: method kto scores each answer against the gold "
                "label, but the recipe declares no label column; set data.columns.label"
            )
        kind, base = self.job.task.label_kind(ex.aspect), base_row(ex, self.messages)
        answers = ex.answers or ()
        if held:  # eval reads the prompt and gold: one row, the gold answer (as SFT writes it),
            # so no model's answer decides whether the example is kept or its text cut
            gold = self.job.task.completion("", ex.gold, ex.aspect)
            return [base | {"completion": assistant(gold), "label": True}]
        out: list[Row | str] = []
        for answer in answers:
            if not answer:
                out.append(EMPTY_ANSWER)
                continue
            good = desirable(answer, ex.gold, kind)
            counts["desirable"] += good
            counts["undesirable"] += not good
            out.append(base | {"completion": assistant(answer), "label": good})
        return out


def both_sides(config: Any, recipe: Recipe, report: Any) -> None:
    """A `UserError` when the training rows are all desirable or all undesirable: KTO learns
    from the contrast (answer columns that hold no answer format, or gold itself, give one
    side only)."""
    counts = report.method_counts.get("answers", {})
    good, bad = counts.get("desirable", 0), counts.get("undesirable", 0)
    if good and bad:
        return
    missing = "desirable" if not good else "undesirable"
    raise UserError(
        f"method kto needs desirable and undesirable answers, but the training rows hold "
        f"{good} desirable and {bad} undesirable: none is {missing}. Do method.answers name "
        f"the models' answer columns ({_columns(recipe)})? An answer is desirable when its "
        "<label> block equals gold; an answer without one is undesirable"
    )


def _columns(recipe: Recipe) -> str:
    m = recipe.method
    assert isinstance(m, KTOMethod)
    return "; ".join(f"{a}: {', '.join(cols)}" for a, cols in m.answers.items())


METHOD = TrainingMethod(
    name="kto",
    schema=KTOMethod,
    config_class="trl.KTOConfig",
    trainer_class="trl.KTOTrainer",
    config_kwargs=config_kwargs,
    trl_defaults={
        "learning_rate": 1e-06,
        "remove_unused_columns": True,
        "max_length": 1024,
        "beta": 0.1,
        "loss_type": "kto",
        "desirable_weight": 1.0,
        "undesirable_weight": 1.0,
    },
    maker=Rows,
    answer_columns=("completion",),
    extra_columns={"label": "bool"},
    counts="answers",
    reference="always",
    ref_model_arg=True,
    shuffle=True,
    # one sequence per row (the KL and reference forwards run without gradients);
    # KTOConfig.disable_dropout is on by default
    memory=MemoryFactors(dropout=False),
    hyperparameters=("max_length", "beta", "loss_type", "desirable_weight", "undesirable_weight"),
    after_data=both_sides,
)
