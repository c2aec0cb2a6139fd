"""What `predict` would do, for `llmscisci plan` of a predict recipe. Loads no model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.predict.output import default_output
from llmscisci_cfg.predict.settings import sampling
from llmscisci_cfg.recipe.resolve import Job


@dataclass
class PredictPlan:
    """What `predict` would do (for `plan`): task, engine, sampling, output. Loads no model."""

    recipe_ref: str
    facts: dict[str, Any]

    @classmethod
    def of(cls, recipe_ref: str, job: Job) -> PredictPlan:
        g, method = job.recipe.generation, job.recipe.method
        sampled = sampling(job)
        facts = {
            "task": f"{job.task.name} ({job.task.kind}), aspects {', '.join(job.aspects)}",
            "source": job.data.ref,
            "engine": g.backend
            + (
                f" at {g.base_url}, model {g.model or job.model.name}"
                if g.backend == "openai"
                else f", model {job.model.name}"
            ),
            "sampling": f"max_new_tokens {sampled.max_new_tokens}, temperature {sampled.temperature}, top_p {sampled.top_p}",
            "structured output": "on" if g.structured else "off",
            "shots": f"{method.shots} ({method.selection})" if method.shots else "none (zero-shot)",
            "long sections": f"truncated ({method.truncate})",
            "output": str(default_output(job)) + " (or --output)",
            "command": f"llmscisci predict {recipe_ref}",
        }
        return cls(recipe_ref, facts)

    def as_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe_ref, "predict": self.facts}

    def as_text(self) -> str:
        width = max(len(k) for k in self.facts)
        return "== predict\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in self.facts.items())
