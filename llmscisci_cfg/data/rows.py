"""What the data stage needs from a training method: its `RowBuilder`.

The data stage reads rows into method-agnostic examples (`Example`: one per report per
aspect, gold decoded, by `data.examples.read_row`); a training method turns each into its own
rows. The method is given by the caller (`llmscisci_cfg.train.methods.get(job.method)`, whose
descriptors are row builders): the data stage sits below ``train`` and never looks a method
up itself.

A method's rows carry ``id``, ``aspect``, ``prompt`` (system + user messages), ``gold`` and,
while they are built, ``text`` (the section as read); then its `RowBuilder.answer_columns`
(one assistant message each: what the length filter measures with the prompt, what the
datasets keep) and its `RowBuilder.extra_columns` (plain values, e.g. a bool label).

>>> from llmscisci_cfg.train import methods                          # doctest: +SKIP
>>> build_dataset(job, methods.get(job.method))                      # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.task.labels import shown

if TYPE_CHECKING:
    from llmscisci_cfg.recipe.resolve import Job

Row = dict[str, Any]
Message = dict[str, str]
#: ``messages(aspect, text)``: the prompt of a section (`TaskSpec.messages`, or the same
#: from `measure.Prompts`, which renders each aspect's prompt once).
MessagesFn = Callable[[str, str], list[Message]]


@dataclass(frozen=True)
class Example:
    """One section of one report, before it becomes a method's row."""

    id: str
    aspect: str
    text: str
    gold: Any  # the aspect's label value (`task.kinds`), None without label columns
    where: str  # file:line of the source row, for messages
    chosen: str | None = None
    rejected: str | None = None
    answers: tuple[str, ...] | None = None  # answers scored against gold (data.pairs, ...)


class RowMaker(Protocol):
    """One build's row maker (it may hold what the method loaded for the build, e.g. traces)."""

    def rows(self, example: Example, held: bool, counts: Counter) -> Iterable[Row | str]:
        """The method's rows for ``example``, each a row or the reason (a drop reason) one
        was not made; ``held``: the example is in a held-out split (eval reads its prompt and
        gold). ``counts``: what the method counts of the rows it builds
        (`RowBuilder.counts` names it in the report)."""
        ...


class RowBuilder(Protocol):
    """A training method as the data stage sees it (`llmscisci_cfg.train.methods`)."""

    @property
    def name(self) -> str: ...  # the method's name (messages; the cache key has it anyway)

    @property
    def answer_columns(self) -> tuple[str, ...]:
        """Columns of one assistant message each (SFT ``completion``; DPO ``chosen``,
        ``rejected``); none when the policy writes the answer (GRPO)."""
        ...

    @property
    def extra_columns(self) -> Mapping[str, str]:
        """Other columns its rows carry, by Arrow value type (e.g. ``{"label": "bool"}``)."""
        ...

    @property
    def counts(self) -> str | None:
        """The report entry of what `RowMaker.rows` counts (SFT ``traces``), or None."""
        ...

    def maker(self, job: Job, messages: MessagesFn) -> RowMaker: ...


def base_row(ex: Example, messages: MessagesFn) -> Row:
    """The columns every method's row has: ``id``, ``aspect``, ``prompt``, ``gold``, ``text``."""
    try:
        prompt = messages(ex.aspect, ex.text)
    except UserError as exc:
        raise UserError(f"{ex.where}: id {shown(ex.id)}: {exc}") from None
    return {"id": ex.id, "aspect": ex.aspect, "prompt": prompt, "gold": ex.gold, "text": ex.text}


def assistant(content: str) -> list[Message]:
    """One assistant message, as answer columns hold it."""
    return [{"role": "assistant", "content": content}]


def row_columns(rows: RowBuilder) -> list[str]:
    """The columns of a method's built rows, in order (without the in-memory ``text``)."""
    return ["id", "aspect", "prompt", "gold", *rows.answer_columns, *rows.extra_columns]
