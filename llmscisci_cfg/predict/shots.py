"""Few-shot examples for in-context labelling: drawn from a labelled pool, never the row itself.

The pool is a labelled table (``method.pool``) or this table's own labelled rows. For each
section, ``k`` examples of the same aspect are drawn, seeded by (seed, document id, aspect) so
a re-run (or a resumed run, or another process of a sharded one) draws the same ones:
``random`` samples them; ``stratified`` walks the categories present in the pool in turn and
takes one example whose label has that category, so rare categories are shown too (and fills
up with examples that name none, such as an all-absent label, when the categories run out).

Few-shot never silently becomes fewer-shot: a pool without a usable example for an aspect (no
id, an empty section, an unreadable label or one the task's constraints forbid: `Pool.skipped`
counts them) is refused when the prediction starts, and so is a section whose pool holds fewer
than ``k`` examples besides its own document (`shortfall`).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from llmscisci_cfg.data.clean import CleanOptions, section_text
from llmscisci_cfg.data.examples import cell_text
from llmscisci_cfg.task.labels import LabelError
from llmscisci_cfg.task.spec import TaskSpec

#: A shot's section is cut to this many tokens (its start): examples teach the format.
SHOT_TOKENS = 256


@dataclass(frozen=True)
class Shot:
    id: str
    text: str
    label: Any  # the aspect's label value (`task.kinds`)


@dataclass
class Pool:
    """The few-shot examples per aspect, and per aspect why the other pool rows are not one."""

    shots: dict[str, list[Shot]]
    skipped: dict[str, Counter] = field(default_factory=dict)


def pool_shots(
    rows: list[dict],
    task: TaskSpec,
    id_column: str,
    text: dict[str, str],
    label: dict[str, str],
    codec: str,
    clean: CleanOptions | None = None,
) -> Pool:
    """Per aspect, the pool's examples with an id, a non-empty section and a readable label the
    task's constraints allow; the section read by `data.clean.section_text` (cleaned by
    ``clean``, the recipe's data.clean), the id as a predicted row's (`cell_text`)."""
    pool = Pool({a: [] for a in label}, {a: Counter() for a in label})
    for row in rows:
        doc = cell_text(row.get(id_column))
        for aspect, column in label.items():
            why = ""
            body = section_text(row.get(text[aspect]), clean)
            try:
                gold = _label(task, aspect, row.get(column), codec)
            except LabelError:
                why = "an unreadable label"
            if not why and gold is None:
                why = "a label the task's constraints forbid"
            why = "no id" if not doc else "an empty section" if not body else why
            if why:
                pool.skipped[aspect][why] += 1
            else:
                pool.shots[aspect].append(Shot(doc, body, gold))
    return pool


def _label(task: TaskSpec, aspect: str, value: Any, codec: str) -> Any:
    """The gold label of a pool cell (None when the task's constraints forbid it), or a
    `LabelError`; an empty cell is unreadable (``{}`` codes no dimension)."""
    kind = task.label_kind(aspect)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise LabelError("the label is empty")
    label = kind.decode_gold(value, codec)
    rule = getattr(kind, "rule", None)
    return label if rule is None or rule.allows(label) else None


def shortfall(pool: list[Shot], k: int, doc: str) -> int:
    """How many fewer than ``k`` examples the pool holds for document ``doc`` (never itself)."""
    return max(0, k - sum(s.id != doc for s in pool))


def _indicators(label: Any) -> list[int]:
    """Which categories a label names: a one-hot list or a level per dimension (absent 0)
    as it is, a single category index as its position."""
    if isinstance(label, int):
        return [int(i == label) for i in range(label + 1)]
    return [int(v > 0) for v in label]


def choose(
    pool: list[Shot], k: int, doc: str, aspect: str, seed: int, selection: str
) -> list[Shot]:
    """``k`` examples for document ``doc`` (never itself), reproducibly."""
    candidates = [s for s in pool if s.id != doc]
    rng = random.Random(int(hashlib.sha256(f"{seed}|{doc}|{aspect}".encode()).hexdigest(), 16))
    if selection == "random" or k >= len(candidates):
        return rng.sample(candidates, min(k, len(candidates)))
    by_category: dict[int, list[Shot]] = {}
    for shot in candidates:
        for i, v in enumerate(_indicators(shot.label)):
            if v:
                by_category.setdefault(i, []).append(shot)
    for shots in by_category.values():
        rng.shuffle(shots)
    chosen: list[Shot] = []
    while len(chosen) < k and any(by_category.values()):
        for i in sorted(by_category):
            while by_category[i] and by_category[i][-1] in chosen:
                by_category[i].pop()
            if by_category[i] and len(chosen) < k:
                chosen.append(by_category[i].pop())
    rest = [s for s in candidates if s not in chosen]  # labels that name no category
    rng.shuffle(rest)
    return chosen + rest[: k - len(chosen)]
