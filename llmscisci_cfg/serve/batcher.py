"""Requests that arrive together are generated together.

The engine (and so the model) belongs to one worker thread. Each request is queued with a
future; the worker takes the first waiting request, gathers whatever else arrives within
``window`` seconds (up to ``max_batch`` requests), generates them in one engine call, and
resolves the futures. Streamed requests get their text as it is decoded, row by row.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from llmscisci_cfg.models.generate import Completion, Engine, Request

#: ``on_text(sample_index, text_so_far)`` for a streamed request.
TextCallback = Callable[[int, str], None]


@dataclass
class _Item:
    request: Request
    future: Future = field(default_factory=Future)
    on_text: TextCallback | None = None


class Batcher:
    """One worker thread that owns ``engine`` and batches the requests submitted to it."""

    def __init__(self, engine: Engine, max_batch: int = 16, window: float = 0.01):
        self.engine, self.max_batch, self.window = engine, max_batch, window
        self.queue: queue.Queue[_Item | None] = queue.Queue()
        self.batches: list[int] = []  # sizes of the batches generated, for tests and logs
        self.thread = threading.Thread(target=self._run, name="llmscisci-engine", daemon=True)
        self.thread.start()

    def submit(self, request: Request, on_text: TextCallback | None = None) -> Future:
        """Queue ``request``; the future resolves to its completions (``n`` of them)."""
        item = _Item(request, on_text=on_text)
        self.queue.put(item)
        return item.future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=5)

    def _gather(self, first: _Item) -> list[_Item]:
        batch, deadline = [first], time.monotonic() + self.window
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self.queue.get(timeout=max(left, 0)) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # closing: finish this batch first
                self.queue.put(None)
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [
                item for item in self._gather(first) if item.future.set_running_or_notify_cancel()
            ]
            if not batch:
                continue
            self.batches.append(len(batch))

            def on_token(row: int, sample: int, text: str, batch=batch) -> None:
                callback = batch[row].on_text
                if callback is not None:
                    callback(sample, text)

            streaming = any(item.on_text is not None for item in batch)
            try:
                results: list[list[Completion]] = self.engine.generate(
                    [item.request for item in batch], on_token=on_token if streaming else None
                )
            except BaseException as exc:  # the engine failed: every waiting request hears it
                for item in batch:
                    item.future.set_exception(exc)
                continue
            for item, completions in zip(batch, results, strict=True):
                item.future.set_result(completions)
