"""Which rows belong to which split: fixed split files, or a seeded split of the document ids.

``data.splits`` names one file per split (``train``, and ``validation`` / ``test`` when
given), as studies ship them (SciCite, ACL-ARC): each file's rows are that split, and an id
found in two files is reported (``group_overlap``), not moved. Otherwise ``data.source`` is
one table and `split_documents` holds out a seeded fraction of its document ids (with
``data.labels``, of the ids that have a label), so both aspects of a report stay together.

`plan_splits` returns every row once, as one Arrow table with a ``__split__`` column and the
columns the build reads, plus where each row came from (``file:line``) for messages.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmscisci_cfg import console
from llmscisci_cfg.data.sources import Source, load_source, read_source, require_columns
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job

if TYPE_CHECKING:
    from datasets import Dataset

    from llmscisci_cfg.data.labels import Labels

SPLIT = "__split__"
#: Ids named when split files share some.
SHOWN = 5


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


@dataclass
class SplitRows:
    """Every row of every split: ``rows`` has the columns the build reads plus `SPLIT`."""

    rows: Dataset
    names: tuple[str, ...]  # the splits, train first
    by: str  # "id" or "files"
    sources: dict[str, Source]  # split name (or "source") -> the table read
    starts: list[int]  # first row of each source in ``rows``
    overlap: list[str]  # ids found in more than one split file

    def where(self, index: int) -> str:
        """``file:LINE`` of row ``index`` of ``rows``."""
        k = bisect.bisect_right(self.starts, index) - 1
        return list(self.sources.values())[k].where(index - self.starts[k])

    def counts(self) -> dict[str, int]:
        """Source rows per split."""
        import pyarrow.compute as pc

        found = dict.fromkeys(self.names, 0)
        for pair in pc.value_counts(self.rows.data.table.column(SPLIT)).to_pylist():
            found[pair["values"]] = pair["counts"]
        return found


def plan_splits(job: Job, labels: Labels | None = None) -> SplitRows:
    """The job's rows with their split: from ``data.splits``, else by document id."""
    if job.splits is not None:
        return _from_files(job)
    return _by_id(job, labels)


def document_ids(values: Iterable[Any]) -> list[str]:
    """Every non-empty document id among ``values`` (cells as text, stripped)."""
    from llmscisci_cfg.data.examples import cell_text

    ids = (cell_text(v) for v in values)
    return [i for i in ids if i]


def _by_id(job: Job, labels: Labels | None) -> SplitRows:
    """``data.source`` split by id: the split depends only on the file, the fraction and the
    seed (not on aspects, cleaning or tokens), and with ``data.labels`` on the labelled ids."""
    from llmscisci_cfg.data.examples import cell_text, check_ids

    source = load_source(job)
    require_columns(source, job.columns.required())
    ids = source.rows[job.columns.id][:]
    check_ids(ids, source.where, job)
    docs = document_ids(ids)
    if labels is not None:
        docs = [d for d in docs if d in labels.cells]
    split = job.recipe.data.split
    held = split_documents(docs, split.test_fraction, job.split_seed)
    column = ["test" if cell_text(v) in held else "train" for v in ids]
    rows = _needed(source, job).add_column(SPLIT, column)
    return SplitRows(rows, ("train", "test"), "id", {"source": source}, [0], [])


def _from_files(job: Job) -> SplitRows:
    """``data.splits``: each file is its split; ids shared between files are reported."""
    from datasets import concatenate_datasets

    from llmscisci_cfg.data.examples import check_ids

    assert job.splits is not None
    fmt = job.recipe.data.splits.format
    sources: dict[str, Source] = {}
    parts, starts, start = [], [], 0
    for name, file in job.splits.items():
        source = read_source(file.require(), fmt, file.key)
        require_columns(source, job.columns.required())
        check_ids(source.rows[job.columns.id][:], source.where, job)
        sources[name] = source
        parts.append(_needed(source, job).add_column(SPLIT, [name] * len(source.rows)))
        starts.append(start)
        start += len(source.rows)
    try:
        rows = concatenate_datasets(parts)
    except ValueError as exc:
        files = ", ".join(str(s.path) for s in sources.values())
        raise UserError(
            f"data.splits: the split files ({files}) have different column types: {exc}"
        ) from None
    overlap = _shared_ids(sources, job.columns.id)
    if overlap:
        console.warn(
            f"data.splits: {len(overlap)} id(s) are in more than one split file (first: "
            f"{', '.join(overlap[:SHOWN])}); their rows stay in the file's split and are "
            "counted as group_overlap"
        )
    names = tuple(n for n in ("train", "validation", "test") if n in sources or n == "test")
    return SplitRows(rows, names, "files", sources, starts, overlap)


def _needed(source: Source, job: Job) -> Dataset:
    """The columns the build reads (each once, in a fixed order)."""
    return source.rows.select_columns(list(dict.fromkeys(job.columns.required().values())))


def _shared_ids(sources: dict[str, Source], id_column: str) -> list[str]:
    """Ids found in more than one of the split files, in file order."""
    seen: dict[str, str] = {}
    shared: dict[str, None] = {}
    for name, source in sources.items():
        for doc in dict.fromkeys(document_ids(source.rows[id_column][:])):
            if seen.setdefault(doc, name) != name:
                shared.setdefault(doc)
    return list(shared)
