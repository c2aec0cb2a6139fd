"""Few-shot examples for in-context labelling: drawn from a labelled pool, never the row itself.

The pool is a labelled table (``method.pool``) or this table's own labelled rows. For each
section, ``k`` examples of the same aspect are drawn, seeded by (seed, document id, aspect) so
a re-run (or a resumed run, or another process of a sharded one) draws the same ones:
``random`` samples them; ``stratified`` walks the categories present in the pool in turn and
takes one example whose label has that category, so rare categories are shown too.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from llmscisci_cfg.data.clean import CleanOptions, section_text
from llmscisci_cfg.task.labels import LabelError
from llmscisci_cfg.task.spec import TaskSpec

#: A shot's section is cut to this many tokens (its start): examples teach the format.
SHOT_TOKENS = 256


@dataclass(frozen=True)
class Shot:
    id: str
    text: str
    label: Any  # the aspect's label value (`task.kinds`)


def pool_shots(
    rows: list[dict],
    task: TaskSpec,
    id_column: str,
    text: dict[str, str],
    label: dict[str, str],
    codec: str,
    clean: CleanOptions | None = None,
) -> dict[str, list[Shot]]:
    """Per aspect, the pool's examples with a non-empty section and a readable label; the
    section read by `data.clean.section_text` (cleaned by ``clean``, the recipe's data.clean)."""
    out: dict[str, list[Shot]] = {a: [] for a in label}
    for row in rows:
        doc = str(row.get(id_column) or "").strip()
        for aspect, column in label.items():
            kind = task.label_kind(aspect)
            body = section_text(row.get(text[aspect]), clean)
            try:
                gold = kind.decode_gold(row.get(column), codec)
            except LabelError:
                continue
            if doc and body:
                out[aspect].append(Shot(doc, body, gold))
    return out


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
    return chosen
