"""``llmscisci plan``: what `run` would do, without loading a model or any ML library.

Shows the resolved recipe (defaults filled), the TRL config kwargs it compiles to (those that
differ from TRL's defaults, plus the key ones), LoRA / quantization / model kwargs, rewards,
the exact launch command, this machine's problems and, when the dataset is already cached,
its summary.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, replace
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
from llmscisci_cfg.train.memory import GIB, Estimate

# What the CUDA context takes beside torch's allocations (see `llmscisci_cfg.train.memory`).
CUDA_CONTEXT = GIB // 2


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
    memory: MemoryPlan | None = None

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
            "memory": self.memory.as_dict() if self.memory else None,
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
        if self.memory is not None:
            parts.append(_section("memory", self.memory.as_text()))
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


def make_plan(recipe_ref: str, overrides: tuple[str, ...] = (), here: bool = False) -> Plan:
    """What `run` would do with a training recipe on this machine (its first half, `prepare`).
    ``here``: compare the memory estimate with this machine's GPU."""
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
        memory=memory_plan(job, prepared.compiled, here),
    )


@dataclass(frozen=True)
class MemoryPlan:
    """The peak-memory estimate of a job and, with ``--here``, this machine's GPU beside it."""

    estimate: Estimate | None
    here: bool = False
    device_total: int | None = None
    note: str | None = None

    @property
    def fits(self) -> bool | None:
        if self.estimate is None or self.device_total is None:
            return None
        return self.estimate.total + CUDA_CONTEXT <= self.device_total

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.as_dict() if self.estimate else None,
            "device_total_gib": round(self.device_total / GIB, 2) if self.device_total else None,
            "fits": self.fits,
            "note": self.note,
        }

    def as_text(self) -> str:
        if self.estimate is None:
            return (
                "not estimated: the model's config.json is not on this machine (download it, "
                "or run the step that writes it first)"
            )
        lines = [self.estimate.as_text()]
        if self.here and self.estimate.settings.device != "cuda":
            lines.append("this machine: the job runs on CPU (set launch.device: cuda for a GPU)")
        elif self.here and self.device_total is None:
            lines.append("this machine: no CUDA device visible")
        elif self.device_total is not None:
            need = (self.estimate.total + CUDA_CONTEXT) / GIB
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(
                f"this machine: {verdict}: ~{need:.1f} GiB of the GPU's "
                f"{self.device_total / GIB:.1f} GiB ({need * GIB / self.device_total:.0%})"
            )
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def memory_plan(job: Job, compiled: Compiled | None = None, here: bool = False) -> MemoryPlan:
    """The memory estimate for ``job`` as ``compiled`` (default: `compile_recipe`; the settings
    are read off what TRL receives, never re-derived from the recipe), with the built data's
    length limits when cached."""
    from llmscisci_cfg.data import preprocess
    from llmscisci_cfg.train import memory

    compiled = compiled if compiled is not None else compile_recipe(job)
    try:
        report = preprocess.cached_report(job)
    except UserError:  # the data is not here yet: estimate with the recipe's lengths
        report = None
    lengths = None
    if report is not None:  # the longest built example, within the filter's limits
        limits, found = report.length_limits, report.token_lengths
        lengths = {k: found.get(k) or limits.get(k) for k in ("prompt", "total")}
        lengths["prompt_any"] = found.get("prompt_any")
    est = memory.estimate_job(job, compiled, lengths)
    if not here or est is None or est.settings.device != "cuda":
        return MemoryPlan(est, here)
    total = memory.device_memory()
    if total and est.settings.vllm_share:  # colocated vLLM takes a share of this GPU
        reserved = round(est.settings.vllm_share * total)
        est = memory.estimate(est.shape, replace(est.settings, vllm_reserved=reserved))
    note = None
    if est.settings.quant_bits == 4:
        note = memory.quantization_note(est.shape, total, est.settings)
    return MemoryPlan(est, here, total, note)


def data_summary(job: Job) -> dict[str, Any]:
    """The source (and its sha256) and, when `preprocess` has cached this build, its summary."""
    from llmscisci_cfg.data import preprocess

    info: dict[str, Any] = {}
    try:  # each data file by role: source (or the split files), labels, traces
        for role, file in job.inputs.items():
            info[role], info[f"{role}_sha256"] = str(file.require()), file.sha256
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
