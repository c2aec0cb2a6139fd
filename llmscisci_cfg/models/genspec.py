"""The resolved generation spec: how every door generates, decided once per recipe.

`resolve_generation` turns a recipe's ``generation`` section (with its method and task) into a
frozen `GenSpec`: the backend and its server settings, the sampling (temperature, top-p, seed,
the token budget), batch size, compilation, whether decoding is constrained, the answer
constraint of each aspect (the task's grammar: `llmscisci_cfg.task.grammar.Constraint`), and the
chat template with its sha256. `eval`, `predict`, `serve` (per request), GRPO's rollouts and
`rewards test` read it; none derives its own (`Job.generation` holds it).

**Defaults, once for every door.** Greedy (temperature 0); a seed only when sampling
(``generation.seed``, else ``train.seed``); the token budget is ``generation.max_new_tokens``,
else GRPO's ``max_completion_length``, else the task kind's (`DEFAULT_MAX_NEW_TOKENS`);
decoding is **constrained** to the task's answer grammar (``structured: true``) in eval and
predict alike. GRPO's rollouts sample free text with the method's own temperature and top-p
(the format rewards need answers that can miss the format) and read only the backend,
``compile`` and ``rollout_weights`` from here.

Light: no ML library (`plan` shows the spec).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.models.generate import Sampling
from llmscisci_cfg.models.refs import TemplateRef
from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.task.grammar import Constraint

#: Tokens per answer when neither the recipe nor the method says, by task kind.
DEFAULT_MAX_NEW_TOKENS = {"label": 256, "rationale": 384, "extract": 256, "judge": 160}


@dataclass(frozen=True)
class RemoteSpec:
    """The ``openai`` backend's server: where, which model, and how the answer grammar is sent
    (``grammar``: auto, llmscisci, regex, json_schema or none)."""

    base_url: str
    model: str
    api_key_env: str | None = None
    max_concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 3
    grammar: str = "auto"


@dataclass(frozen=True)
class GenSpec:
    """How a recipe generates (see the module doc)."""

    backend: str
    sampling: Sampling
    batch_size: int = 16
    compile: str = "auto"
    structured: bool = True
    remote: RemoteSpec | None = None
    constraints: tuple[tuple[str, Constraint], ...] = ()  # (aspect, its answer grammar)
    template: TemplateRef | None = None
    logprobs: bool = True

    def constraint(self, aspect: str) -> Constraint | None:
        """The constraint decoding keeps for ``aspect`` (None when ``structured`` is off)."""
        if not self.structured:
            return None
        return dict(self.constraints).get(aspect)

    def describe(self, template: TemplateRef | None = None) -> dict[str, Any]:
        """The spec as reports record it (``template``: the one actually used, when the model
        brought its own)."""
        used = template or self.template
        s = self.sampling
        out: dict[str, Any] = {
            "backend": self.backend,
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            "batch_size": self.batch_size,
            "structured": self.structured,
            "constraint": {a: describe_constraint(c) for a, c in self.constraints}
            if self.structured
            else None,
            "chat_template": {"name": used.name, "sha256": used.sha256} if used else None,
        }
        if self.remote is not None:
            out["server"] = {
                "base_url": self.remote.base_url,
                "model": self.remote.model,
                "grammar": self.remote.grammar,
            }
        return out


def describe_constraint(c: Constraint) -> str:
    """One line for reports: ``multi over 5 categories: category 5 alone, …``."""
    if c.kind == "json_schema":
        return "JSON schema of the task's answer"
    label = c.label
    what = f"{label.kind} answer over {label.n} " + (
        "dimensions" if label.kind == "dimensions" else "categories"
    )
    rule = getattr(label, "rule", None)
    return what + (f" ({rule.describe()})" if rule is not None else "")


def resolve_generation(
    recipe: Recipe, task: Any, aspects: list[str], template: TemplateRef
) -> GenSpec:
    """The `GenSpec` of a recipe (``task``: its loaded `TaskSpec`; ``aspects``: those used)."""
    g, method = recipe.generation, recipe.method
    budget = g.max_new_tokens
    if budget is None:
        budget = getattr(method, "max_completion_length", None) or DEFAULT_MAX_NEW_TOKENS[task.kind]
    seed = g.seed if g.seed is not None else (recipe.train.seed if g.temperature > 0 else None)
    sampling = Sampling(max_new_tokens=budget, temperature=g.temperature, top_p=g.top_p, seed=seed)
    remote = None
    if g.backend == "openai":
        remote = RemoteSpec(
            base_url=g.base_url or "",
            model=g.model or recipe.model.name_or_path,
            api_key_env=g.api_key_env,
            max_concurrency=g.max_concurrency,
            timeout=g.timeout,
            max_retries=g.max_retries,
            grammar=g.server_grammar,
        )
    constraints = tuple((a, task.constraint(a, budget)) for a in aspects)
    return GenSpec(
        backend=g.backend,
        sampling=sampling,
        batch_size=g.batch_size,
        compile=g.compile,
        structured=g.structured,
        remote=remote,
        constraints=constraints,
        template=template,
        logprobs=g.logprobs,
    )
