"""Requests that arrive together are generated together, and each is answered on its own.

The engine (and so the model) belongs to one worker thread. Each request is queued as a
`Ticket` with a future; the worker takes the first waiting ticket, gathers whatever else arrives
within ``window`` seconds (up to ``max_batch`` requests), generates them in one engine call, and
resolves the futures. Streamed requests get their text as it is decoded, row by row.

One request never costs another its answer:

- a seeded request is generated in an engine call of its own: the engine seeds the generator
  once per batch, so two requests sharing a seed and a batch would draw from one generator
  and neither would get the sample it gets alone;
- when an engine call fails, each of its requests is generated again alone, so only the
  request that makes the engine fail gets the error (the others get their answers; a sampled
  request without a seed may then differ from text it already streamed);
- a streamed request whose listener fails is cancelled, not the batch.

A ticket cancelled by its client (`Ticket.cancel`) is dropped while it waits and has its rows
stopped at the next decode step once it runs (`llmscisci_cfg.models.generate.Abandoned`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from llmscisci_cfg.models.generate import Completion, Request

#: ``on_text(sample_index, text_so_far)`` for a streamed request.
TextCallback = Callable[[int, str], None]


@dataclass(eq=False)
class Ticket:
    """One submitted request: the future of its completions (``n`` of them)."""

    request: Request
    on_text: TextCallback | None = None
    future: Future = field(default_factory=Future)
    cancelled: bool = False

    def cancel(self) -> None:
        """Nobody waits for the answer any more: dropped if it is still queued, its rows
        stopped at the next decode step if it is being generated."""
        self.cancelled = True
        self.future.cancel()  # only a queued future can be cancelled; a running one finishes

    def listen(self, sample: int, text: str) -> None:
        if self.on_text is None or self.cancelled:
            return
        try:
            self.on_text(sample, text)
        except Exception:  # a listener that cannot take text (its loop has closed) has gone
            self.cancel()


class Batcher:
    """One worker thread that owns ``engine`` (a `TransformersEngine`) and batches the requests
    submitted to it. ``batches`` records the size of every engine call, for tests and logs."""

    def __init__(self, engine: Any, max_batch: int = 16, window: float = 0.01):
        self.engine, self.max_batch, self.window = engine, max_batch, window
        self.queue: queue.Queue[Ticket | None] = queue.Queue()
        self.batches: list[int] = []
        self.retried = 0  # requests generated again alone after their batch failed
        self.thread = threading.Thread(target=self._run, name="llmscisci-engine", daemon=True)
        self.thread.start()

    def submit(self, request: Request, on_text: TextCallback | None = None) -> Ticket:
        """Queue ``request``; its ticket's future resolves to its completions."""
        ticket = Ticket(request, on_text=on_text)
        self.queue.put(ticket)
        return ticket

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=5)

    def _gather(self, first: Ticket) -> list[Ticket]:
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
            batch = [t for t in self._gather(first) if t.future.set_running_or_notify_cancel()]
            for group in _engine_calls(batch):
                self.batches.append(len(group))
                self._generate(group)

    def _generate(self, group: list[Ticket]) -> None:
        """One engine call for ``group``; if it fails, one call per request."""
        streaming = any(t.on_text is not None for t in group)

        def on_token(row: int, sample: int, text: str) -> None:
            group[row].listen(sample, text)

        try:
            results: list[list[Completion]] = self.engine.generate(
                [t.request for t in group],
                on_token=on_token if streaming else None,
                cancelled=lambda i: group[i].cancelled,
            )
        except Exception as exc:
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            for ticket in group:  # only the request that breaks the engine hears of it
                if ticket.cancelled:
                    ticket.future.set_exception(exc)
                else:
                    self.retried += 1
                    self._generate([ticket])
            return
        except BaseException as exc:  # not an engine failure: every waiting request hears it
            for ticket in group:
                ticket.future.set_exception(exc)
            return
        for ticket, completions in zip(group, results, strict=True):
            ticket.future.set_result(completions)


def _engine_calls(batch: list[Ticket]) -> list[list[Ticket]]:
    """The engine calls for one gathered batch: the unseeded requests together, each seeded one
    alone (a seeded request's sample must not depend on who else asked for the same seed)."""
    shared = [t for t in batch if t.request.sampling.seed is None]
    alone = [[t] for t in batch if t.request.sampling.seed is not None]
    return ([shared] if shared else []) + alone
