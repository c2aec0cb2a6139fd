"""What a training method is: a `TrainingMethod` descriptor and its `MemoryFactors`.

Each method module (`sft`, `dpo`, `grpo`, ...) makes one; `train.methods.get` finds it by
name. Plain data and small functions, no class hierarchy; light at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from llmscisci_cfg.data.rows import MessagesFn, RowMaker
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import Recipe


@dataclass(frozen=True)
class MemoryFactors:
    """What the memory estimate (`train.memory`) needs to know of a method's training step."""

    sequences: int = 1  # sequences per example in one forward (DPO: chosen + rejected)
    scores_completions: bool = False  # the LM head scores only the completions (GRPO)
    dropout: bool = True  # LoRA dropout runs (DPOConfig disables dropout by default)
    generates: bool = False  # a generation phase: rollouts of prompt + max_completion_length


@dataclass(frozen=True)
class TrainingMethod:
    """One training method: what it reads, the rows it makes, what TRL receives."""

    name: str
    schema: type  # its recipe section (`recipe.schema`), whose `Needs` the checks read
    config_class: str  # e.g. trl.SFTConfig
    trainer_class: str  # e.g. trl.SFTTrainer
    #: ``config_kwargs(recipe, device)``: the method's own config kwargs, on top of the
    #: training kwargs every method shares (`train.compile.training_kwargs`)
    config_kwargs: Callable[[Recipe, str], dict[str, Any]]
    #: TRL 1.16's defaults of the keys ``config_kwargs`` sets (a test checks them); `plan`
    #: shows the kwargs that differ
    trl_defaults: Mapping[str, Any]
    #: ``maker(job, messages)``: this build's row maker (`data.rows.RowMaker`)
    maker: Callable[[Job, MessagesFn], RowMaker]
    answer_columns: tuple[
        str, ...
    ] = ()  # one assistant message each (what the length filter measures)
    extra_columns: Mapping[str, str] = field(default_factory=dict)  # other columns, by Arrow type
    counts: str | None = None  # the report entry of what its rows count (SFT: traces)
    #: a frozen reference model: never, always, or when the config's ``beta`` > 0; with LoRA
    #: the adapter switched off is the reference
    reference: Literal["never", "always", "beta"] = "never"
    #: without LoRA: the trainer takes the reference as ``ref_model`` (else it reloads it
    #: from the policy's config path)
    ref_model_arg: bool = False
    rewards: bool = False  # the trainer takes the recipe's reward stack (``reward_funcs``)
    #: the training rows are shuffled once with ``train.seed`` before the trainer gets them
    #: (KTO: its trainer reads them in order and pairs neighbours for the KL term)
    shuffle: bool = False
    memory: MemoryFactors = MemoryFactors()
    #: the config keys a report's methods paragraph names, beside the shared ones
    hyperparameters: tuple[str, ...] = ()
    #: ``extras(recipe, device)``: more `train.compile.Compiled` fields (GRPO: its rollouts)
    extras: Callable[[Recipe, str], dict[str, Any]] | None = None
    #: ``after_data(config, recipe, report)``: config settings that depend on the built data
    #: (GRPO: the paged rollout cache sized for the longest prompt)
    after_data: Callable[[Any, Recipe, Any], None] | None = None

    def needs_reference(self, beta: float | None) -> bool:
        """Whether training keeps a frozen reference model (``beta``: the config's)."""
        return self.reference == "always" or (self.reference == "beta" and bool(beta))
