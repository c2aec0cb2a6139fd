"""`BuildReport`: what building a dataset did; ``summary()`` is ``preprocess --json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BuildReport:
    """What preprocessing did. ``summary()`` is the ``preprocess --json`` object."""

    rows: int  # source rows read
    examples: int  # examples in the built dataset (all splits)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> examples left out
    splits: dict[str, int] = field(default_factory=dict)  # split name -> examples
    group_overlap: int = 0  # documents with examples on both sides of the split (must be 0)
    documents: dict[str, int] = field(default_factory=dict)  # split name -> documents
    length_limits: dict[str, int | None] = field(
        default_factory=dict
    )  # prompt / total token limits
    traces: dict[str, int] = field(default_factory=dict)  # SFT: with_trace / without_trace
    # longest train example in tokens, as built: {"prompt", "total"} (memory estimates); GRPO
    # also "prompt_any", the longest prompt of either split (continuous batching's cache)
    token_lengths: dict[str, int | None] = field(default_factory=dict)
    # length filter: {"strategy", "splits": {split: {aspect: {reason | "truncated": n}}}}
    length: dict[str, Any] = field(default_factory=dict)
    test_excluded: list[list[str]] = field(default_factory=list)  # [id, aspect, reason]
    test_set_sha256: str = ""  # see `preprocess.held_out_sha256`
    cleaning: dict[str, dict[str, int]] = field(default_factory=dict)  # `CleanTally.counts`
    clean_samples: list[dict[str, Any]] = field(default_factory=list)  # `CleanTally.samples`
    source_sha256: str = ""
    cache_key: str = ""
    cache_path: str = ""
    cache_hit: bool = False

    def summary(self) -> dict[str, Any]:
        """The `preprocess --json` summary: rows, examples, dropped, splits, group_overlap,
        test_set_sha256; with a length filter its per-split/aspect counts (``length``) and
        the test examples it excluded; with ``data.clean`` the counts per aspect
        (``cleaning``); for SFT with a trace file, how many examples got a trace."""
        out: dict[str, Any] = {
            "rows": self.rows,
            "examples": self.examples,
            "dropped": dict(self.dropped),
            "splits": dict(self.splits),
            "group_overlap": self.group_overlap,
            "test_set_sha256": self.test_set_sha256,
        }
        if self.token_lengths:
            out["token_lengths"] = dict(self.token_lengths)
        if self.length:
            out["length"] = self.length
            out["test_excluded"] = self.test_excluded
        if self.cleaning:
            out["cleaning"] = self.cleaning
        if self.traces:
            out["traces"] = dict(self.traces)
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BuildReport:
        return cls(**json.loads(text))
