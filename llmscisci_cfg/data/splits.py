"""Which documents are held out: a seeded split of the document ids."""

from __future__ import annotations

import random
from collections.abc import Iterable


def split_documents(ids: Iterable[str], test_fraction: float, seed: int) -> set[str]:
    """The ids held out for test: a seeded shuffle of the sorted unique ids.

    Depends only on the set of ids, the fraction and the seed (not on row order). With two
    or more documents both sides get at least one; a single document goes to train.

    >>> sorted(split_documents(["a", "b", "c", "d", "a"], 0.5, seed=0))
    ['a', 'c']
    """
    docs = sorted(set(ids))
    random.Random(seed).shuffle(docs)
    n = len(docs)
    n_test = 0 if n < 2 else min(max(round(n * test_fraction), 1), n - 1)
    return set(docs[:n_test])
