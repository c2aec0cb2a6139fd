"""``llmscisci plan``: what `run` would do, without loading a model or any ML library.

Shows the resolved recipe (defaults filled), the TRL config kwargs it compiles to (those that
differ from TRL's defaults, plus the key ones), LoRA / quantization / model kwargs, rewards,
the exact launch command, this machine's problems and, when the dataset is already cached,
its summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from llmscisci_cfg.recipe import checks
from llmscisci_cfg.recipe.loader import load_recipe
from llmscisci_cfg.recipe.schema import Recipe
from llmscisci_cfg.runs.manifest import resolved_yaml
from llmscisci_cfg.runs.rundir import default_run_dir
from llmscisci_cfg.train import launch
from llmscisci_cfg.train.compile import Compiled, compile_recipe


@dataclass
class Plan:
    """Everything `plan` prints; ``as_text`` for people, ``as_dict`` for ``--json``."""

    recipe_ref: str
    recipe: Recipe
    resolved_yaml: str
    compiled: Compiled
    run_dir: str
    command: str
    accelerate_config: dict[str, Any] | None
    machine_problems: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe_ref,
            "resolved": yaml.safe_load(self.resolved_yaml),
            "compiled": self.compiled.as_dict()
            | {"changed_kwargs": self.compiled.changed_kwargs()},
            "run_dir": self.run_dir,
            "command": self.command,
            "accelerate_config": self.accelerate_config,
            "machine_problems": self.machine_problems,
            "data": self.data,
        }

    def as_text(self) -> str:
        c = self.compiled
        parts = [
            _section("resolved recipe", self.resolved_yaml.split("\n", 1)[1].rstrip()),
            _section(
                f"{c.config_class} (non-default and key fields; device {c.device})",
                _kv(c.changed_kwargs()),
            ),
            _section("model kwargs", _kv(c.model_kwargs)),
        ]
        if c.lora_kwargs:
            parts.append(_section("peft.LoraConfig", _kv(c.lora_kwargs)))
        if c.bnb_kwargs:
            parts.append(_section("transformers.BitsAndBytesConfig", _kv(c.bnb_kwargs)))
        if c.reward_names:
            rows = {n: f"weight {w}" for n, w in zip(c.reward_names, c.reward_weights, strict=True)}
            parts.append(_section("rewards", _kv(rows | c.derived)))
        parts.append(_section("data", _kv(self.data)))
        launch_text = self.command
        if self.accelerate_config:
            launch_text += "\naccelerate config (written to the run dir):\n" + _indent(
                yaml.safe_dump(self.accelerate_config, sort_keys=False).rstrip()
            )
        parts.append(_section("launch", launch_text))
        parts.append(_section("run directory", self.run_dir))
        problems = "\n".join(self.machine_problems) or "none: this machine can run it"
        parts.append(_section("machine", problems))
        return "\n\n".join(parts)


def make_plan(recipe_ref: str, overrides: tuple[str, ...] = ()) -> Plan:
    """Load and compile ``recipe_ref`` for this machine."""
    recipe = load_recipe(recipe_ref, overrides)
    if recipe.rewards:  # plug-ins are imported here, not at validate time
        from llmscisci_cfg.rewards.registry import check_callables, raise_found

        raise_found(check_callables(recipe.rewards, recipe.source_dir))
    cuda = checks.cuda_present()
    run_dir = str(default_run_dir(recipe))
    lp = launch.plan_launch(recipe, recipe_ref, tuple(overrides), run_dir, cuda)
    found = checks.machine_problems(recipe, cuda)
    problems = [f"{'.'.join(map(str, path))}: {message}" for path, message in found]
    return Plan(
        recipe_ref=recipe_ref,
        recipe=recipe,
        resolved_yaml=resolved_yaml(recipe),
        compiled=compile_recipe(recipe, cuda, run_dir),
        run_dir=run_dir,
        command=lp.shell(),
        accelerate_config=lp.accelerate_config,
        machine_problems=problems,
        data=data_summary(recipe),
    )


def data_summary(recipe: Recipe) -> dict[str, Any]:
    """The source (and its sha256) and, when `preprocess` has cached this build, its summary."""
    from llmscisci_cfg.data import preprocess
    from llmscisci_cfg.data.sources import data_path, source_sha256
    from llmscisci_cfg.errors import UserError

    try:
        info: dict[str, Any] = {
            "source": str(data_path(recipe, recipe.data.source.path, "data.source.path")),
            "source_sha256": source_sha256(recipe),
        }
    except UserError as exc:
        return {"source": recipe.data.source.path, "problem": str(exc)}
    report = preprocess.cached_report(recipe)
    if report is None:
        info["built"] = (
            "not cached yet; `llmscisci preprocess` builds it and prints the split summary"
        )
    else:
        info.update(report.summary())
    return info


def _section(title: str, body: str) -> str:
    return f"== {title}\n{body}"


def _kv(values: dict[str, Any]) -> str:
    return "\n".join(
        f"  {k}: {v!r}" if not isinstance(v, str) else f"  {k}: {v}" for k, v in values.items()
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
