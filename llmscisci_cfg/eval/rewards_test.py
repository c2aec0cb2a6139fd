"""``llmscisci rewards test``: score a JSONL of completions with a reward stack, before any GPU.

Each line of the file is a JSON object with ``completion`` (text or a message list) plus
the columns rewards read (``gold`` for the label rewards). Rows are grouped in file order,
``group_size`` at a time, as GRPO groups the generations of one prompt; a group whose total
reward does not vary gives GRPO no signal, and is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmscisci_cfg import files
from llmscisci_cfg.data.sources import jsonl_records
from llmscisci_cfg.errors import UserError, first_line
from llmscisci_cfg.models.load import tokenizer_available
from llmscisci_cfg.recipe.resolve import Job
from llmscisci_cfg.recipe.schema import RewardSpec
from llmscisci_cfg.rewards.builtin import LabelKinds, WhitespaceTokenizer
from llmscisci_cfg.rewards.compose import build_rewards, default_label_kinds, needs_tokenizer
from llmscisci_cfg.rewards.registry import BUILTINS, check_callables, check_specs
from llmscisci_cfg.rewards.score import COMPLETION, NumCategories, ScoreReport, score

# ----------------------------------------------------------------------------- reading


def read_completions(path: Path) -> list[dict[str, Any]]:
    """The JSONL rows of ``path``; a bad line is a `UserError` naming ``file:line``."""
    text = files.read_text(path, "--completions", files.DATA_LIMIT)
    rows = []
    for number, row in jsonl_records(text, path):
        if COMPLETION not in row:
            have = ", ".join(row) or "no keys"
            raise UserError(f"{path}:{number}: missing key {COMPLETION!r} (has {have})")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no completions (the file is empty)")
    return rows


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class _Setup:
    """What scoring needs, from a recipe or from the defaults."""

    specs: list[RewardSpec]
    base: Path  # plug-in files resolve from here
    label_kinds: LabelKinds
    group_size: int | None
    job: Job | None = None


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
        setup = _Setup([RewardSpec(name=n) for n in names], Path.cwd(), default_label_kinds(), None)
        notes.append(
            "default task builtin:repro_effort, default parameters; "
            f"categories: {_show(setup.label_kinds)}"
        )
    _check(setup.specs, setup.base, columns, recipe)
    tokenizer = None
    if needs_tokenizer(setup.specs, setup.base):
        tokenizer, what = _tokenizer(setup.job)
        notes.append(f"cot_length tokens counted with {what}")
    stack = build_rewards(setup.specs, setup.base, setup.label_kinds, tokenizer, columns)
    counts = _counts(setup.label_kinds)
    return score(stack, rows, group_size or setup.group_size, counts, notes)


def _check(specs: list[RewardSpec], base: Path, columns: list[str], recipe: str | None) -> None:
    """Every name, parameter and signature problem at once, as a `UserError`."""
    found = check_specs(specs, base) or check_callables(specs, base, columns)
    lines = []
    for problem in found:
        spec = specs[problem.key[1]]
        if recipe is not None:
            lines.append(str(problem.at(recipe)))
        else:
            lines.append(f"reward {spec.name}: {problem.message.removeprefix(spec.name + ': ')}")
    if lines:
        raise UserError("\n".join(lines))


def _counts(kinds: LabelKinds) -> NumCategories:
    if not isinstance(kinds, Mapping):
        return kinds.n
    counts = {a: k.n for a, k in kinds.items()}
    return counts if len(set(counts.values())) > 1 else next(iter(counts.values()))


def _show(kinds: LabelKinds) -> str:
    counts = _counts(kinds)
    if isinstance(counts, int):
        return str(counts)
    return ", ".join(f"{a} {k}" for a, k in counts.items())


def _from_recipe(ref: str, only: Sequence[str]) -> _Setup:
    from llmscisci_cfg.recipe.loader import load_job

    job = load_job(ref)
    recipe = job.recipe
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
    return _Setup(specs, recipe.source_dir, job.label_kinds, group, job)


def _tokenizer(job: Job | None) -> tuple[Any, str]:
    """The recipe's tokenizer; else the shipped tiny one; else whitespace words. Says which.

    Nothing is downloaded: a hub model's tokenizer is used only when it is already cached.
    """
    failed = ""
    if job is not None:
        model = job.model.name
        if not tokenizer_available(job.model):
            failed = f" ({model} is neither a local directory nor in the Hugging Face cache here)"
        else:
            try:
                from llmscisci_cfg.models.load import load_tokenizer

                return load_tokenizer(
                    job.model, job.template, job.assistant_only
                ), f"the tokenizer of {model}"
            except Exception as exc:  # broken files, chat module absent
                failed = f" (the recipe's tokenizer could not be loaded: {first_line(exc, 200)})"
    try:
        from llmscisci_cfg.models.tiny import load_tiny_tokenizer

        return load_tiny_tokenizer(), "the shipped tiny tokenizer" + failed
    except Exception:
        return WhitespaceTokenizer(), WhitespaceTokenizer.name + failed


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
