"""``llmscisci rewards test``: score a JSONL of completions with a reward stack, before any GPU.

Each line of the file is a JSON object with ``completion`` (text or a message list) plus
the columns rewards read (``gold`` for the label rewards). Rows are grouped in file order,
``group_size`` at a time, as GRPO groups the generations of one prompt; a group whose total
reward does not vary gives GRPO no signal, and is flagged.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmscisci_cfg.data.sources import jsonl_records
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import Recipe, RewardSpec
from llmscisci_cfg.rewards.builtin import NumCategories, WhitespaceTokenizer
from llmscisci_cfg.rewards.compose import (
    RewardStack,
    build_rewards,
    default_num_categories,
    needs_tokenizer,
    task_num_categories,
)
from llmscisci_cfg.rewards.registry import BUILTINS, check_callables, check_specs

COMPLETION = "completion"


@dataclass(frozen=True)
class GroupStat:
    """Spread of the weighted total over one group (std with Bessel's correction, as TRL)."""

    first: int
    last: int
    mean: float
    std: float

    @property
    def zero_variance(self) -> bool:
        return self.last > self.first and math.isclose(self.std, 0.0, abs_tol=1e-8)


@dataclass(frozen=True)
class ScoreReport:
    """Scores of every completion by every reward, their weighted totals and group spreads."""

    names: list[str]
    weights: list[float]
    scores: list[list[float]]  # [completion][reward]
    totals: list[float]
    groups: list[GroupStat]
    num_categories: NumCategories = 0
    notes: list[str] = field(default_factory=list)

    @property
    def zero_variance_groups(self) -> list[GroupStat]:
        return [g for g in self.groups if g.zero_variance]

    def json_lines(self) -> list[str]:
        """One ``{"index", "rewards", "total"}`` object per completion (NaN, ±inf → null)."""
        return [
            json.dumps(
                {
                    "index": i,
                    "rewards": {n: _json_num(v) for n, v in zip(self.names, row, strict=True)},
                    "total": _json_num(total),
                }
            )
            for i, (row, total) in enumerate(zip(self.scores, self.totals, strict=True))
        ]


def _json_num(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN or infinity


# ----------------------------------------------------------------------------- reading


def read_completions(path: Path) -> list[dict[str, Any]]:
    """The JSONL rows of ``path``; a bad line is a `UserError` naming ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    rows = []
    for number, row in jsonl_records(text, path):
        if COMPLETION not in row:
            have = ", ".join(row) or "no keys"
            raise UserError(f"{path}:{number}: missing key {COMPLETION!r} (has {have})")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no completions (the file is empty)")
    return rows


# ----------------------------------------------------------------------------- scoring


def score(
    stack: RewardStack,
    rows: Sequence[dict[str, Any]],
    group_size: int | None = None,
    num_categories: NumCategories = 0,
    notes: Sequence[str] = (),
) -> ScoreReport:
    """Call every reward of ``stack`` on ``rows`` the way TRL does, and total them."""
    n = len(rows)
    size = group_size or n
    if size < 1 or n % size:
        raise UserError(
            f"{n} completions do not split into groups of {size}; give --group-size that divides {n}"
        )
    kwargs = trainer_kwargs(rows)
    columns = [
        _call(fn, name, n, kwargs) for fn, name in zip(stack.funcs, stack.names, strict=True)
    ]
    scores = [list(r) for r in zip(*columns, strict=True)] if columns else [[] for _ in range(n)]
    totals = [_weighted(row, stack.weights) for row in scores]
    groups = [_group(totals, start, start + size - 1) for start in range(0, n, size)]
    return ScoreReport(
        stack.names, stack.weights, scores, totals, groups, num_categories, list(notes)
    )


def trainer_kwargs(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The keyword arguments TRL would pass: every column, plus prompts, completions, state."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    kwargs: dict[str, Any] = {
        k: [row.get(k) for row in rows]
        for k in keys
        if k not in (COMPLETION, "prompt", "completion_ids")
    }
    kwargs["prompts"] = [row.get("prompt", "") for row in rows]
    kwargs["completions"] = [row[COMPLETION] for row in rows]
    kwargs["completion_ids"] = [row.get("completion_ids") for row in rows]
    kwargs["trainer_state"] = None
    kwargs["log_extra"] = _ignore
    kwargs["log_metric"] = _ignore
    return kwargs


def _ignore(*args: Any, **kwargs: Any) -> None:
    """Stands in for TRL's log_extra / log_metric."""


def _call(fn, name: str, n: int, kwargs: dict[str, Any]) -> list[float]:
    try:
        out = fn(**kwargs)
        if inspect.isawaitable(out):  # an async plug-in (TRL awaits it on its event loop)
            out = asyncio.run(out)
    except Exception as exc:
        raise UserError(f"reward {name!r} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(out, (list, tuple)) or len(out) != n:
        got = f"{len(out)} values" if isinstance(out, (list, tuple)) else type(out).__name__
        raise UserError(
            f"reward {name!r} returned {got}; expected a list of {n} floats, one per completion"
        )
    try:
        return [math.nan if v is None else float(v) for v in out]
    except (TypeError, ValueError) as exc:
        raise UserError(f"reward {name!r} returned a value that is not a number: {exc}") from None


def _weighted(row: list[float], weights: list[float]) -> float:
    """TRL's total: the weighted sum, skipping None (NaN) values; NaN when all are NaN."""
    parts = [v * w for v, w in zip(row, weights, strict=True) if not math.isnan(v)]
    return math.fsum(parts) if parts else math.nan


def _group(totals: list[float], first: int, last: int) -> GroupStat:
    values = [v for v in totals[first : last + 1] if not math.isnan(v)]
    if not values:
        return GroupStat(first, last, math.nan, math.nan)
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return GroupStat(first, last, mean, math.nan)
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return GroupStat(first, last, mean, math.sqrt(var))


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class _Setup:
    """What scoring needs, from a recipe or from the defaults."""

    specs: list[RewardSpec]
    base: Path  # plug-in files resolve from here
    num_categories: NumCategories
    group_size: int | None
    recipe: Recipe | None = None


def run_test(
    completions: Path,
    recipe: str | None = None,
    rewards: Sequence[str] = (),
    group_size: int | None = None,
) -> ScoreReport:
    """What ``llmscisci rewards test`` computes: load, check, build, score."""
    rows = read_completions(completions)
    columns = [k for k in dict.fromkeys(k for row in rows for k in row) if k != COMPLETION]
    notes: list[str] = []
    if recipe is not None:
        setup = _from_recipe(recipe, rewards)
    else:
        names = rewards or list(BUILTINS)
        setup = _Setup(
            [RewardSpec(name=n) for n in names], Path.cwd(), default_num_categories(), None
        )
        notes.append(
            "default task builtin:repro_effort, default parameters; "
            f"categories: {_show(setup.num_categories)}"
        )
    _check(setup.specs, setup.base, columns, recipe)
    tokenizer = None
    if needs_tokenizer(setup.specs, setup.base):
        tokenizer, what = _tokenizer(setup.recipe)
        notes.append(f"cot_length tokens counted with {what}")
    stack = build_rewards(setup.specs, setup.base, setup.num_categories, tokenizer, columns)
    return score(stack, rows, group_size or setup.group_size, setup.num_categories, notes)


def _check(specs: list[RewardSpec], base: Path, columns: list[str], recipe: str | None) -> None:
    """Every name, parameter and signature problem at once, as a `UserError`."""
    found = check_specs(specs, base) or check_callables(specs, base, columns)
    lines = []
    for path, message in found:
        spec = specs[path[1]]
        if recipe is not None:
            lines.append(f"{recipe}: {'.'.join(map(str, path))}: {message}")
        else:
            lines.append(f"reward {spec.name}: {message.removeprefix(spec.name + ': ')}")
    if lines:
        raise UserError("\n".join(lines))


def _show(n_cat: NumCategories) -> str:
    return str(n_cat) if isinstance(n_cat, int) else ", ".join(f"{a} {k}" for a, k in n_cat.items())


def _from_recipe(ref: str, only: Sequence[str]) -> _Setup:
    from llmscisci_cfg.recipe.loader import load_recipe

    recipe = load_recipe(ref, [])
    if not recipe.rewards:
        raise UserError(
            f"{ref}: the recipe has no rewards (method {recipe.method.name}); rewards belong to grpo"
        )
    specs = list(recipe.rewards)
    if only:
        labels = [s.label for s in specs]
        unknown = [name for name in only if name not in labels]
        if unknown:
            raise UserError(
                f"--reward {unknown[0]}: not in {ref}'s rewards; it has: {', '.join(labels)}"
            )
        specs = [s for s in specs if s.label in only]
    group = getattr(recipe.method, "num_generations", None)
    return _Setup(specs, recipe.source_dir, task_num_categories(recipe), group, recipe)


def _tokenizer(recipe: Recipe | None) -> tuple[Any, str]:
    """The recipe's tokenizer; else the shipped tiny one; else whitespace words. Says which.

    Nothing is downloaded: a hub model's tokenizer is used only when it is already cached.
    """
    failed = ""
    if recipe is not None:
        model = recipe.model.name_or_path
        if not _available_here(model, recipe.model.revision):
            failed = f" ({model} is neither a local directory nor in the Hugging Face cache here)"
        else:
            try:
                from llmscisci_cfg.models.chat import load_tokenizer

                return load_tokenizer(recipe), f"the tokenizer of {model}"
            except Exception as exc:  # broken files, chat module absent
                failed = f" (the recipe's tokenizer could not be loaded: {_first_line(exc)})"
    try:
        from llmscisci_cfg.models.tiny import load_tiny_tokenizer

        return load_tiny_tokenizer(), "the shipped tiny tokenizer" + failed
    except Exception:
        return WhitespaceTokenizer(), WhitespaceTokenizer.name + failed


def _available_here(model: str, revision: str | None) -> bool:
    """A built-in or local model, or a hub id whose tokenizer is cached (checked offline)."""
    if model.startswith("builtin:") or Path(model).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(
            try_to_load_from_cache(model, "tokenizer_config.json", revision=revision), str
        )
    except Exception:  # not a valid repo id, no hub library
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


# ----------------------------------------------------------------------------- the table


def format_table(report: ScoreReport) -> str:
    """The human-readable report: per-completion scores, means, group spreads, warnings."""
    names = report.names
    heads = ["#", *names, "total"]
    cells = [
        [str(i), *(_num(v) for v in row), _num(t)]
        for i, (row, t) in enumerate(zip(report.scores, report.totals, strict=True))
    ]
    means = [_mean([row[j] for row in report.scores]) for j in range(len(names))]
    cells.append(["mean", *(_num(m) for m in means), _num(_mean(report.totals))])
    weight_row = ["weight", *(_num(w) for w in report.weights), ""]
    widths = [max(len(r[k]) for r in [heads, weight_row, *cells]) for k in range(len(heads))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    out = [*(f"note: {n}" for n in report.notes), line(heads), line(weight_row)]
    out += [line(r) for r in cells[:-1]] + ["-" * len(line(heads)), line(cells[-1]), ""]
    out += _group_lines(report)
    return "\n".join(out)


def _group_lines(report: ScoreReport) -> list[str]:
    out = ["group  completions  mean total  std total"]
    for k, g in enumerate(report.groups):
        flag = "  <- zero variance" if g.zero_variance else ""
        out.append(
            f"{k:>5}  {f'{g.first}-{g.last}':>11}  {_num(g.mean):>10}  {_num(g.std):>9}{flag}"
        )
    zero = report.zero_variance_groups
    if zero:
        out.append(
            f"warning: {len(zero)} of {len(report.groups)} groups have zero reward variance; "
            "GRPO's advantage is 0 for them and it learns nothing from them"
        )
    return out


def _num(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else str(x)


def _mean(values: list[float]) -> float:
    ok = [v for v in values if not math.isnan(v)]
    return math.fsum(ok) / len(ok) if ok else math.nan
