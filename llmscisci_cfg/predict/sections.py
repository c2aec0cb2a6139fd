"""What every section of one prediction shares, and how one row's section becomes an `Item`.

`Sections` holds a request builder per aspect (the chat template that renders prompts, the
token count and the prompt budget that cut long sections), the few-shot pool and the engine,
opened on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.predict.settings import sampling
from llmscisci_cfg.recipe.resolve import Job


@dataclass
class Sections:
    """What every section of one prediction shares: builders per aspect, the shot pool, the
    engine (built on first use)."""

    job: Job
    device: str
    builders: dict[str, Any]
    pool: dict[str, list]
    tokenizer: Any
    opened: Any  # `models.load.Opened`: tokenizer and chat template (weights on first use)
    cleaning: Any = None  # `data.clean.CleanOptions` of the recipe's data.clean
    _engine: Any = None

    @classmethod
    def create(cls, job: Job, device: str, table) -> Sections:
        from llmscisci_cfg.predict.items import Builder

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

    def item(self, index: int, aspect: str, row: dict[str, Any]):
        from llmscisci_cfg.data.clean import section_text
        from llmscisci_cfg.data.examples import cell_text
        from llmscisci_cfg.predict.items import build_item
        from llmscisci_cfg.predict.shots import choose

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


def _pool(job: Job, table) -> dict[str, list]:
    method = job.recipe.method
    if not method.shots or job.task.kind != "label" or not job.columns.label:
        return {}
    from llmscisci_cfg.data.table import read_table
    from llmscisci_cfg.predict.shots import pool_shots

    rows = read_table(job.path(method.pool)).rows if method.pool else table.rows
    cols = job.columns
    codec = job.recipe.data.label_codec
    from llmscisci_cfg.data.clean import options_of

    cleaning = options_of(job.recipe.data.clean)
    return pool_shots(rows, job.task, cols.id, cols.text, cols.label, codec, cleaning)
