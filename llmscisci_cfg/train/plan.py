"""``llmscisci plan``: what `run` would do, without loading a model or any ML library.

Shows the resolved recipe (defaults filled), the TRL config kwargs it compiles to (those that
differ from TRL's defaults, plus the key ones), LoRA / quantization / model kwargs, rewards,
the exact launch command, this machine's problems and, when the dataset is already cached,
its summary.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmscisci_cfg.errors import Problem, UserError, raise_problems
from llmscisci_cfg.recipe import checks
from llmscisci_cfg.recipe.loader import load_job
from llmscisci_cfg.recipe.resolve import ORIGIN_ENV, Job, Origin
from llmscisci_cfg.runs.manifest import resolved_yaml
from llmscisci_cfg.train.compile import Compiled, compile_recipe
from llmscisci_cfg.train.launch import LaunchPlan, plan_launch


@dataclass(frozen=True)
class Prepared:
    """The first half of `run`, which `plan` shows: the resolved job, what it compiles to, how
    it launches, and what this machine cannot do."""

    job: Job
    compiled: Compiled
    launch: LaunchPlan
    machine_problems: list[Problem]


def prepare(
    recipe_ref: str,
    overrides: tuple[str, ...] = (),
    run_dir: str | Path | None = None,
    resume: bool = False,
    worker: bool = False,
    absolute: bool = False,
    overwrite: bool = False,
) -> Prepared:
    """Load, resolve, check plug-ins (importing them) and compile ``recipe_ref`` for this machine.

    ``worker``: a process of a multi-process launch, which loads the run's resolved recipe and
    takes the user's recipe reference and ``--set`` values from ``LLMSCISCI_ORIGIN``.
    ``absolute``: the run directory as an absolute path (what `run` writes into).
    """
    origin = _worker_origin() if worker else None
    job = load_job(recipe_ref, overrides, run_dir=run_dir, origin=origin)
    if absolute:
        job = dataclasses.replace(job, run_dir=job.run_dir.absolute())
    if job.recipe.rewards:  # plug-ins are imported here, not at validate time
        from llmscisci_cfg.rewards.registry import check_callables

        raise_problems(check_callables(job.recipe.rewards, job.source_dir))
    return Prepared(
        job=job,
        compiled=compile_recipe(job),
        launch=plan_launch(job, resume, overwrite),
        machine_problems=checks.machine_problems(job.recipe, job.cuda),
    )


def _worker_origin() -> Origin | None:
    import json

    raw = os.environ.get(ORIGIN_ENV)
    if not raw:
        return None
    data = json.loads(raw)
    return Origin(str(data["ref"]), tuple(data.get("overrides") or ()))


@dataclass
class Plan:
    """Everything `plan` prints; ``as_text`` for people, ``as_dict`` for ``--json``."""

    recipe_ref: str
    job: Job
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
    """What `run` would do with ``recipe_ref`` on this machine (its first half, `prepare`)."""
    prepared = prepare(recipe_ref, tuple(overrides))
    job = prepared.job
    return Plan(
        recipe_ref=recipe_ref,
        job=job,
        resolved_yaml=resolved_yaml(job),
        compiled=prepared.compiled,
        run_dir=str(job.run_dir),
        command=prepared.launch.shell(),
        accelerate_config=prepared.launch.accelerate_config,
        machine_problems=[str(p) for p in prepared.machine_problems],
        data=data_summary(job),
    )


def data_summary(job: Job) -> dict[str, Any]:
    """The source (and its sha256) and, when `preprocess` has cached this build, its summary."""
    from llmscisci_cfg.data import preprocess

    try:
        info: dict[str, Any] = {"source": str(job.data.require()), "source_sha256": job.data.sha256}
    except UserError as exc:
        return {"source": job.data.ref, "problem": str(exc)}
    report = preprocess.cached_report(job)
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
