"""The batcher over the in-process tiny engine: one request's failure or departure costs no other
request its answer, and work nobody waits for stops."""

from __future__ import annotations

import threading

import pytest

from llmscisci_cfg.models import chat
from llmscisci_cfg.models.generate import Request, Sampling
from llmscisci_cfg.serve.batcher import Batcher

PROMPTS = ["Classify: the code was public.", "What was easy?", "hi", "Label it."]


def _request(tiny, text: str, **sampling) -> Request:
    prompt = chat.render(tiny.tokenizer, [{"role": "user", "content": text}], True)
    return Request(prompt=prompt, sampling=Sampling(**{"max_new_tokens": 6, **sampling}))


@pytest.fixture
def batcher(tiny):
    running = Batcher(tiny.engine, max_batch=8, window=0.2)
    yield running
    running.close()


def test_an_engine_failure_reaches_only_the_request_that_caused_it(tiny, batcher):
    """A temperature of 1e-300 (the server refuses it now; the engine does not) makes sampling
    fail. Its batch is generated again one request at a time: the neighbours get their answers."""
    good = [_request(tiny, p) for p in PROMPTS]
    alone = [tiny.engine.generate([r])[0] for r in good]
    bad = _request(tiny, "hi", temperature=1e-300)
    tickets = [batcher.submit(r) for r in good[:2] + [bad] + good[2:]]
    assert isinstance(tickets[2].future.exception(timeout=60), RuntimeError)
    del tickets[2]
    assert [t.future.result(timeout=60) for t in tickets] == alone
    assert batcher.retried == 5  # the batch of five, each alone


def test_a_cancelled_request_that_still_waits_is_never_generated(tiny):
    batcher = Batcher(tiny.engine, max_batch=8, window=0.0)
    started = threading.Event()
    try:
        first = batcher.submit(
            _request(tiny, "hi", max_new_tokens=400), on_text=lambda i, t: started.set()
        )
        assert started.wait(30)  # the first is generating; the next ones queue behind it
        dropped = batcher.submit(_request(tiny, "What was easy?"))
        dropped.cancel()
        first.cancel()
        last = batcher.submit(_request(tiny, "Label it."))
        assert last.future.result(timeout=60)[0].text
    finally:
        batcher.close()
    assert dropped.future.cancelled()
    assert batcher.batches == [1, 1]  # the first and the last; the dropped one never ran
    assert first.future.result()[0].completion_tokens < 100  # stopped, not run to 400


def _cancel_after(tokens: int, ticket_box: list):
    def on_text(sample: int, text: str) -> None:
        ticket_box[1] += 1
        if ticket_box[1] >= tokens:
            ticket_box[0].cancel()

    return on_text


def test_a_request_abandoned_mid_batch_stops_and_its_neighbour_finishes(tiny, batcher):
    """Two requests share a batch; one client leaves after 3 tokens. Its rows stop there (the
    batch does not pad them for 200 steps), the other's answer is the one it gets alone."""
    stay = _request(tiny, "Classify: the code was public.", max_new_tokens=200)
    leave = _request(tiny, "What was easy?", max_new_tokens=200)
    alone = tiny.engine.generate([stay])[0]
    box: list = [None, 0]
    box[0] = batcher.submit(leave, on_text=_cancel_after(3, box))
    kept = batcher.submit(stay)
    assert kept.future.result(timeout=120) == alone
    assert batcher.batches == [2]
    assert box[0].future.result(timeout=10)[0].completion_tokens <= 8


def test_a_listener_that_fails_cancels_only_its_own_request(tiny, batcher):
    stay = _request(tiny, "Classify: the code was public.", max_new_tokens=50)
    alone = tiny.engine.generate([stay])[0]

    def broken(sample: int, text: str) -> None:
        raise RuntimeError("the event loop is closed")

    gone = batcher.submit(_request(tiny, "What was easy?", max_new_tokens=50), on_text=broken)
    kept = batcher.submit(stay)
    assert kept.future.result(timeout=60) == alone
    assert gone.cancelled and gone.future.result(timeout=10)[0].completion_tokens <= 4


def test_seeded_requests_are_generated_alone(tiny, batcher):
    seeded = _request(tiny, "hi", temperature=1.0, seed=3, max_new_tokens=10)
    alone = tiny.engine.generate([seeded])[0]
    tickets = [batcher.submit(seeded) for _ in range(3)] + [batcher.submit(_request(tiny, "hi"))]
    assert [t.future.result(timeout=60) for t in tickets[:3]] == [alone] * 3
    assert sorted(batcher.batches) == [1, 1, 1, 1]
