"""`BuildReport`: what building a dataset did, per split; ``summary()`` is ``preprocess --json``.

It is saved beside the cached dataset (``build_report.json``), copied into a run's manifest
(``data_report``) and read by the model card and `plan`, so a methods section can state, per
split: the rows read, the examples built and left out (by reason), what cleaning changed,
what the length filter dropped or truncated, and two sha256 of the held-out set: of the rows
(ids, gold labels and texts as read and cleaned) and of what the model saw (the prompts after
truncation).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class BuildReport:
    """What preprocessing did. ``summary()`` is the ``preprocess --json`` object."""

    rows: int  # source rows read (every split file together)
    examples: int  # examples in the built dataset (all splits)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> examples left out
    splits: dict[str, int] = field(default_factory=dict)  # split name -> examples
    group_overlap: int = 0  # documents with examples on both sides of the split (must be 0)
    documents: dict[str, int] = field(default_factory=dict)  # split name -> documents
    length_limits: dict[str, int | None] = field(
        default_factory=dict
    )  # prompt / total token limits
    # what the method counted of its rows, under its name for it (`rows.RowBuilder.counts`):
    # e.g. SFT {"traces": {"with_trace": n, "without_trace": n}}
    method_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # longest train example in tokens, as built: {"prompt", "total"} (memory estimates); GRPO
    # also "prompt_any", the longest prompt of every split (continuous batching's cache)
    token_lengths: dict[str, int | None] = field(default_factory=dict)
    # length filter: {"strategy", "splits": {split: {aspect: {reason | "truncated": n}}}}
    length: dict[str, Any] = field(default_factory=dict)
    test_excluded: list[list[str]] = field(default_factory=list)  # [id, aspect, reason]
    test_set_sha256: str = ""  # the test rows: `hashes.rows_sha256`
    test_prompts_sha256: str = ""  # what the model saw of them: `hashes.prompts_sha256`
    cleaning: dict[str, dict[str, int]] = field(default_factory=dict)  # `CleanTally.counts`
    clean_samples: list[dict[str, Any]] = field(default_factory=list)  # `CleanTally.samples`
    # per split: rows, documents, examples, dropped, truncated, cleaning, both sha256 and,
    # for split files, the file and its sha256 (see `split_entry`)
    per_split: dict[str, dict[str, Any]] = field(default_factory=dict)
    split_by: str = "id"  # "id" (data.split) or "files" (data.splits)
    labels: dict[str, Any] = field(default_factory=dict)  # data.labels: the join, `labels.Join`
    bad_labels: list[list[str]] = field(default_factory=list)  # first [id, aspect, where, why]
    source_sha256: str = ""
    cache_key: str = ""
    cache_path: str = ""
    cache_hit: bool = False

    def summary(self) -> dict[str, Any]:
        """The `preprocess --json` summary: rows, examples, dropped, splits, group_overlap,
        both test-set sha256 and ``per_split``; with a length filter its per-split/aspect
        counts (``length``) and the test examples it excluded; with ``data.clean`` the counts
        per aspect (``cleaning``); what the method counted (`method_counts`, each under its own
        name: for SFT with a trace file ``traces``, how many examples got a trace); with
        ``data.labels`` the join (``labels``); the first labels that could not be read
        (``bad_labels``)."""
        out: dict[str, Any] = {
            "rows": self.rows,
            "examples": self.examples,
            "dropped": dict(self.dropped),
            "splits": dict(self.splits),
            "group_overlap": self.group_overlap,
            "test_set_sha256": self.test_set_sha256,
            "test_prompts_sha256": self.test_prompts_sha256,
            "split_by": self.split_by,
            "per_split": self.per_split,
        }
        if self.token_lengths:
            out["token_lengths"] = dict(self.token_lengths)
        if self.length:
            out["length"] = self.length
            out["test_excluded"] = self.test_excluded
        if self.cleaning:
            out["cleaning"] = self.cleaning
        for name, counts in self.method_counts.items():
            out[name] = dict(counts)
        if self.labels:
            out["labels"] = self.labels
        if self.bad_labels:
            out["bad_labels"] = self.bad_labels
        return out

    def split_sha256(self, split: str) -> str | None:
        """The rows sha256 of ``split`` (None for a split this build does not have)."""
        entry = self.per_split.get(split)
        return entry.get("sha256") if entry else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BuildReport:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
