"""`<aspect>_confidence`: the probability of the label's tokens, in both answer forms."""

from __future__ import annotations

import math

import pytest

from llmscisci_cfg.models.generate import Completion, TokenLogprob
from llmscisci_cfg.predict.confidence import NO_LABEL, NO_LOGPROBS, confidence, label_span


def completion(pieces: list[tuple[str, float]]) -> Completion:
    text = "".join(p for p, _ in pieces)
    return Completion(text, 0, len(pieces), "stop", tuple(TokenLogprob(p, lp) for p, lp in pieces))


def test_the_tokens_of_the_label_text_count_and_nothing_else():
    answer = completion(
        [("<think>", -3.0), ("x", -2.0), ("</think>", -1.0), ("<label>", -0.5), ("\n", -9.0),
         ("[1, 0", -0.2), (", 0]", -0.3), ("\n", -9.0), ("</label>", -0.1)]
    )  # fmt: skip
    value, why = confidence(answer)
    assert why == "" and value == pytest.approx(math.exp(-0.5))


def test_a_token_across_the_label_edge_counts_and_bytes_not_characters_align():
    answer = completion([('{"think": "é", "label": "mé', -0.7), ('thod"}', -0.1)])
    assert label_span(answer.text) == (answer.text.index('"mé'), len(answer.text) - 1)
    assert confidence(answer)[0] == pytest.approx(math.exp(-0.8))


def test_why_there_is_none():
    assert confidence(Completion("<label>[1]</label>", 0, 1, "stop")) == (None, NO_LOGPROBS)
    assert confidence(completion([("no label here", -0.1)])) == (None, NO_LABEL)
