"""What every section of one prediction shares, and how one row's section becomes an `Item`.

`Sections` holds a request builder per aspect (the chat template that renders prompts, the
token count and the prompt budget that cut long sections), the few-shot pool and the engine,
opened on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.data.table import Table
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict.items import Builder, Item, build_item
from llmscisci_cfg.predict.settings import sampling
from llmscisci_cfg.predict.shots import Shot, choose, pool_shots, shortfall
from llmscisci_cfg.recipe.resolve import Job


@dataclass
class Sections:
    """What every section of one prediction shares: builders per aspect, the shot pool, the
    engine (built on first use)."""

    job: Job
    device: str
    builders: dict[str, Builder]
    pool: dict[str, list[Shot]]
    tokenizer: Any
    opened: Any  # `models.load.Opened`: tokenizer and chat template (weights on first use)
    cleaning: Any = None  # `data.clean.CleanOptions` of the recipe's data.clean
    _engine: Any = None

    @classmethod
    def create(cls, job: Job, device: str, table: Table) -> Sections:
        opened = open_tokenizer(job, device)
        tokenizer = opened.tokenizer
        render = _renderer(tokenizer)
        sampled = sampling(job)
        limit = _prompt_limit(job, sampled.max_new_tokens)
        from llmscisci_cfg.data.truncate import TokenCount

        counter = TokenCount(tokenizer)
        builders = {
            aspect: Builder(
                job.task,
                sampled,
                job.generation.constraint(aspect),
                render,
                counter,
                limit,
                job.recipe.method.truncate,
            )
            for aspect in job.aspects
        }
        from llmscisci_cfg.data.clean import options_of

        cleaning = options_of(job.recipe.data.clean)
        return cls(job, device, builders, _pool(job, table), tokenizer, opened, cleaning)

    def item(self, index: int, aspect: str, row: dict[str, Any]) -> Item:
        """The `Item` of row ``index``'s section ``aspect``, read as training reads it."""
        from llmscisci_cfg.data.clean import section_text
        from llmscisci_cfg.data.examples import cell_text

        job, cols = self.job, self.job.columns
        doc = cell_text(row.get(cols.id))  # as training reads ids (0 stays "0")
        text = section_text(row.get(cols.text[aspect]), self.cleaning)  # as training reads it
        gold = _gold(job, aspect, row) if cols.label and job.task.kind == "rationale" else None
        method = job.recipe.method
        answers = [row.get(c) for c in (method.answers or {}).get(aspect, [])]
        shots = []
        if method.shots and job.task.kind == "label":
            seed = (
                job.recipe.generation.seed
                if job.recipe.generation.seed is not None
                else job.recipe.train.seed
            )
            shots = choose(
                self.pool.get(aspect, []), method.shots, doc, aspect, seed, method.selection
            )
        return build_item(
            self.builders[aspect], index, aspect, doc, text, gold, answers or None, shots
        )

    def engine(self):
        if self._engine is None:
            from llmscisci_cfg.models.engines import open_engine

            job = self.job
            self._engine, opened = open_engine(
                job.generation, job.model, job.template, job.recipe.model, self.device, _quiet
            )
            self.opened = opened if opened.tokenizer is not None else self.opened
        return self._engine

    def engine_name(self) -> str:
        g = self.job.recipe.generation
        if g.backend == "openai":
            return f"{g.model or self.job.model.name} at {g.base_url}"
        return f"{self.job.model.name} ({g.backend})"


def open_tokenizer(job: Job, device: str):
    """The tokenizer and chat template predict renders and counts with, before any weights
    load: the model's own template for a run directory or a model folder (with a warning
    when the recipe names another), else the recipe's; None for a hosted model whose
    tokenizer is not here (tokens are then estimated from characters)."""
    from llmscisci_cfg.models.engines import tokenizer_only

    return tokenizer_only(job.model, job.template, job.generation.backend == "transformers")


def _quiet(message: str) -> None:
    """The template warning, said once (`open_tokenizer` said it already)."""


def _renderer(tokenizer):
    if tokenizer is None:
        return lambda messages: "\n\n".join(m["content"] for m in messages)
    from llmscisci_cfg.models import chat

    return lambda messages: chat.render(tokenizer, messages, add_generation_prompt=True)


def _prompt_limit(job: Job, max_new_tokens: int) -> int | None:
    """``method.max_prompt_tokens``, else the model's context minus the answer when its config
    is here (a local or built-in model, also behind a server); a hosted model's context is not
    known: None (a server that refuses a long prompt says so, and how to set the limit)."""
    method = job.recipe.method
    if method.max_prompt_tokens is not None:
        return method.max_prompt_tokens
    local = job.model.builtin or job.model.local_dir is not None
    if job.recipe.generation.backend != "transformers" and not local:
        return None
    from llmscisci_cfg.models.load import context_length

    return context_length(job.model) - max_new_tokens


def _gold(job: Job, aspect: str, row: dict[str, Any]) -> Any:
    from llmscisci_cfg.task.labels import LabelError

    kind = job.task.label_kind(aspect)
    try:
        label = kind.decode_gold(row.get(job.columns.label[aspect]), job.recipe.data.label_codec)
    except LabelError:
        return None
    rule = getattr(kind, "rule", None)  # a gold that breaks the task's constraints: unreadable
    return label if rule is None or rule.allows(label) else None


def _pool(job: Job, table: Table) -> dict[str, list[Shot]]:
    """The few-shot examples per aspect (`predict.shots`), from ``method.pool`` or this table;
    a pool without the columns, or without a usable example for an aspect, is a `UserError`."""
    method = job.recipe.method
    if not method.shots or job.task.kind != "label" or not job.columns.label:
        return {}
    from llmscisci_cfg.data.clean import options_of
    from llmscisci_cfg.data.table import read_table

    cols = job.columns
    if method.pool:
        table = read_table(job.path(method.pool))
        _check_pool_columns(job, table)
    codec = job.recipe.data.label_codec
    cleaning = options_of(job.recipe.data.clean)
    pool = pool_shots(table.rows, job.task, cols.id, cols.text, cols.label, codec, cleaning)
    for aspect, shots in pool.shots.items():
        if not shots:
            why = ", ".join(f"{n} with {r}" for r, n in pool.skipped[aspect].most_common())
            raise UserError(
                f"method.shots {method.shots}: {_pool_name(job, table)} has no usable example "
                f"for {aspect} (column {cols.label[aspect]!r}; {len(table.rows)} rows: "
                f"{why or 'none'}); give labelled rows, or method.shots: 0 for zero-shot"
            )
    return pool.shots


def _pool_name(job: Job, table: Table) -> str:
    return f"method.pool {table.path}" if job.recipe.method.pool else f"this table ({table.path})"


def _check_pool_columns(job: Job, table: Table) -> None:
    from llmscisci_cfg.data.sources import column_list

    cols = job.columns
    wanted = {"data.columns.id": cols.id}
    wanted |= {f"data.columns.text.{a}": c for a, c in cols.text.items()}
    wanted |= {f"data.columns.label.{a}": c for a, c in cols.label.items()}
    missing = [f"column {c!r} ({key})" for key, c in wanted.items() if c not in table.columns]
    if missing:
        raise UserError(
            f"method.pool {table.path}: {', '.join(missing)} not found; the few-shot pool "
            f"needs the same columns as the table; its columns: {column_list(table.columns)}"
        )


def check_shots(job: Job, sections: Sections, items: list[Item]) -> None:
    """`UserError` when a section would get fewer worked examples than ``method.shots``: its
    pool holds too few besides the row's own document."""
    k = job.recipe.method.shots
    if not sections.pool:
        return
    short = [i for i in items if i.requests and shortfall(sections.pool.get(i.aspect, []), k, i.id)]
    if short:
        sizes = ", ".join(f"{a} {len(p)}" for a, p in sections.pool.items())
        shown = ", ".join(f"row {i.row + 1} ({i.aspect}, id {i.id!r})" for i in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise UserError(
            f"method.shots {k}: {len(short)} section(s) would be shown fewer examples: the pool "
            f"holds too few besides the row's own document ({shown}{more}); usable examples "
            f"per aspect: {sizes}; give a larger pool (method.pool) or fewer shots"
        )
