"""Trainer callbacks: every logged step into ``metrics.jsonl``; one progress line per logged
step on stderr (instead of transformers' bar and log dict); which processes took part; GRPO
signal warnings; resume state; checkpoint files readable per the umask; the replaced run
dropped at the first checkpoint.

Imported only when training (they subclass transformers' TrainerCallback).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmscisci_cfg import console
from llmscisci_cfg.runs.rundir import (
    METRICS,
    RESUME_STATE,
    discard_previous,
    plain_modes,
    write_json,
)


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsCallback(TrainerCallback):
    """Append ``{"step", "epoch", **logs}`` to ``run_dir/metrics.jsonl`` on the main process."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch}
        row.update({k: _clean(v) for k, v in logs.items()})
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class ProgressLine(TrainerCallback):
    """One line per logged step on stderr (rank 0), e.g.
    ``step 20/100  loss 1.234  1.80 s/step  ETA 2m24s``; GRPO shows its mean reward instead
    of the loss. On a terminal the line is rewritten in place (`console.progress_line`).
    The full log dict goes to ``metrics.jsonl`` only (`MetricsCallback`)."""

    def __init__(self):
        self.start = 0.0
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        seconds = time.perf_counter() - self.start
        done = state.global_step - self.first_step
        console.progress_line(
            progress_text(logs, state.global_step, state.max_steps, seconds, done)
        )

    def on_train_end(self, args, state, control, **kwargs):
        console.end_line()


def progress_text(logs: dict[str, Any], step: int, total: int, seconds: float, done: int) -> str:
    """The progress line for one log: step, the metric that matters, speed, time left.

    >>> progress_text({"loss": 1.2345}, 20, 100, 36.0, 20)
    'step 20/100  loss 1.234  1.80 s/step  ETA 2m24s'
    >>> progress_text({"loss": 0.01, "reward": 0.625}, 3, 10, 3.0, 3)
    'step 3/10  reward 0.625  1.00 s/step  ETA 7s'
    """
    parts = [f"step {step}/{total}"]
    for key in ("reward", "loss", "eval_loss"):
        value = logs.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            parts.append(f"{key} {value:.4g}")
            if key == "reward":
                break  # GRPO's loss says little; its reward is the signal
    if done > 0:
        per_step = seconds / done
        parts.append(f"{per_step:.2f} s/step" if per_step < 100 else f"{per_step:.0f} s/step")
        parts.append(f"ETA {duration(per_step * max(total - step, 0))}")
    return "  ".join(parts)


def duration(seconds: float) -> str:
    """``7s``, ``2m24s``, ``3h05m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def quiet_printer(trainer) -> None:
    """Below verbose, drop transformers' own printer (its tqdm bar writes every log dict) and,
    at the normal level, print `ProgressLine` instead. Call once the trainer exists."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if console.library_output():
        return
    for printer in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(printer)
    if console.progress():
        trainer.add_callback(ProgressLine())


class WorldCallback(TrainerCallback):
    """Gather ``{rank, world_size, pid, host}`` from every process at the start of training.

    Proof that a multi-process launch really ran each rank: the gather needs all of them.
    The runner puts ``processes`` into the manifest.
    """

    def __init__(self):
        self.processes: list[dict[str, Any]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        import torch.distributed as dist
        from accelerate import PartialState

        me = {
            "rank": int(os.environ.get("RANK", 0)),
            "world_size": dist.get_world_size() if dist.is_initialized() else 1,
            "backend": dist.get_backend_config() if dist.is_initialized() else None,
            "distributed_type": str(PartialState().distributed_type.value),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        if dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, me)
            self.processes = sorted(gathered, key=lambda p: p["rank"])
        else:
            self.processes = [me]


class SignalCallback(TrainerCallback):
    """Watches GRPO's ``frac_reward_zero_std``: when most groups of a step have the same reward
    for every completion, the advantage is zero and the step teaches nothing. Warns once while
    training (rank 0) and gives a summary line at the end."""

    THRESHOLD = 0.5

    def __init__(self):
        self.fractions: list[float] = []
        self.warned = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        value = (logs or {}).get("frac_reward_zero_std")
        if not isinstance(value, (int, float)) or not state.is_world_process_zero:
            return
        self.fractions.append(float(value))
        if value > self.THRESHOLD and not self.warned:
            self.warned = True
            console.warn(
                f"warning: step {state.global_step}: {value:.0%} of the GRPO groups have zero "
                "reward variance, so they teach nothing; check the rewards (`llmscisci rewards "
                "test`), raise method.temperature or method.num_generations"
            )

    def summary(self) -> str:
        """A warning line when most logged steps carried little signal, else ''."""
        flat = [f for f in self.fractions if f > self.THRESHOLD]
        if not self.fractions or len(flat) * 2 <= len(self.fractions):
            return ""
        mean = sum(self.fractions) / len(self.fractions)
        return (
            f"warning: in {len(flat)} of {len(self.fractions)} logged steps most GRPO groups had "
            f"zero reward variance (mean {mean:.0%}); the run learned little from its rewards"
        )


class PlainModesCallback(TrainerCallback):
    """Each checkpoint's files get the mode a plain ``open`` gives under the umask (0644 under
    022), not safetensors' private 0600: colleagues resume or read them too. Rank 0, after
    the other callbacks' ``on_save`` (it comes after them in the list)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            plain_modes(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class PreviousRunCallback(TrainerCallback):
    """The run an ``--overwrite`` replaced goes once the new run has saved a checkpoint (until
    then a failed new run gives it back: `rundir.settle_previous`)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            discard_previous(self.run_dir)


class ResumeStateCallback(TrainerCallback):
    """Checkpoint the run-level counters transformers/TRL do not, so a resumed run ends identical.

    transformers reports ``train_loss`` for the current ``train()`` call only, and TRL's SFT/DPO
    ``num_tokens`` counter restarts at 0 on resume. This saves both (and the loss not yet
    logged) next to each checkpoint and restores them when training resumes from it.
    Relies on private Trainer attributes of transformers 5.x; a test pins the behaviour.
    """

    def __init__(self, resume_from: Path | None = None):
        self.trainer: Any = None  # set by the builder once the trainer exists
        self.resume_from = resume_from

    def on_save(self, args, state, control, **kwargs):
        t = self.trainer
        if t is None or not state.is_world_process_zero:
            return
        data = {
            "total_loss_scalar": t._total_loss_scalar,
            "tr_loss": float(t._tr_loss.item()),
            "globalstep_last_logged": t._globalstep_last_logged,
            "total_train_tokens": getattr(t, "_total_train_tokens", None),
        }
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / RESUME_STATE
        if path.parent.is_dir():
            write_json(path, data)  # atomic: a kill leaves the whole file or none

    def on_train_begin(self, args, state, control, **kwargs):
        t = self.trainer
        path = self.resume_from / RESUME_STATE if self.resume_from else None
        if t is None or path is None or not path.is_file():
            return
        data = json.loads(path.read_text(encoding="utf-8"))
        t._total_loss_scalar = data["total_loss_scalar"]
        t._tr_loss.fill_(data["tr_loss"])
        t._globalstep_last_logged = data["globalstep_last_logged"]
        t._initial_global_step = 0  # train_loss averages over the whole run, as uninterrupted
        if data["total_train_tokens"] is not None and hasattr(t, "_total_train_tokens"):
            t._total_train_tokens = data["total_train_tokens"]
