"""Peak bytes of torch's CPU tensors over a block: the CPU counterpart of
``torch.cuda.max_memory_allocated``, read from the profiler's allocation records.

>>> with TensorPeak() as peak:
...     run(recipe)
>>> peak.peak_bytes

Counting starts at zero when the block is entered: tensors allocated before it and freed inside
it make the figure low, so enter it before the model is loaded (garbage is collected on entry,
so the objects of an earlier job are gone by then). Only torch's CPU allocator is
seen (not Arrow tables, tokenizers or the Python heap). The profiler records every operator
too, so keep the block to a small job.
"""

from __future__ import annotations

import bisect
from typing import Any


class TensorPeak:
    """``peak_bytes`` (and `live_at`) once the ``with`` block has ended."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._times: list[int] = []
        self._live: list[int] = []
        self._ops: list[Any] = []
        self._profile: Any = None

    def __enter__(self) -> TensorPeak:
        import gc

        from torch.profiler import ProfilerActivity, profile

        gc.collect()
        self._profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._profile.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._profile.__exit__(*exc)
        events = self._profile.profiler.kineto_results.events()
        memory = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
        live = 0
        for event in memory:
            live += event.nbytes()
            self._times.append(event.start_ns())
            self._live.append(live)
        self.peak_bytes = max(self._live, default=0)
        self._ops = [e for e in events if e.name() != "[memory]"]
        self._profile = None

    def live_at(self, ns: int) -> int:
        """Bytes alive at profiler time ``ns``."""
        i = bisect.bisect_right(self._times, ns) - 1
        return self._live[i] if i >= 0 else 0

    def last(self, op: str) -> tuple[int, int] | None:
        """(start, end) in profiler time of the last call of operator ``op``; None if none."""
        calls = [e for e in self._ops if e.name() == op]
        if not calls:
            return None
        call = max(calls, key=lambda e: e.start_ns())
        return call.start_ns(), call.end_ns()
