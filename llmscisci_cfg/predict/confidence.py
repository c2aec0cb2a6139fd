"""``<aspect>_confidence``: the probability the model gave the label it answered.

From the completion's token log-probabilities (a local model records them while it decodes; a
server returns them when asked, ``logprobs: true``): the product of the probabilities of the
tokens that write the label value, i.e. ``exp`` of the sum of their log-probabilities. The
label value is the stripped text of the last ``<label>…</label>`` block (the tag form), or the
value of ``"label"`` (the JSON form a server constrained by a JSON schema returns). A token
counts when any of its bytes falls inside that text.

The probabilities are the model's distribution at the sampling temperature (greedy: the model's
own), before the answer grammar's mask: a label the grammar forced but the model found unlikely
gets a low confidence. A row without a valid answer, or without log-probabilities, has no
confidence; `confidence` says why.

>>> from llmscisci_cfg.models.generate import Completion, TokenLogprob
>>> toks = (TokenLogprob("<label>", -0.1), TokenLogprob("[1]", -0.5), TokenLogprob("</label>", 0.0))
>>> round(confidence(Completion("<label>[1]</label>", 0, 3, "stop", toks))[0], 4)
0.6065
"""

from __future__ import annotations

import json
import math

from llmscisci_cfg.models.generate import Completion

NO_LOGPROBS = "no log-probabilities (the server returned none, or generation.logprobs is off)"
NO_LABEL = "no label in the answer"


def label_span(text: str) -> tuple[int, int] | None:
    """Character offsets of the label value in ``text`` (see the module doc), or None."""
    if text.lstrip().startswith("{"):
        return _json_label_span(text)
    start = text.rfind("<label>")
    if start < 0:
        return None
    start += len("<label>")
    end = text.find("</label>", start)
    if end < 0:
        return None
    inner = text[start:end]
    left = len(inner) - len(inner.lstrip())
    right = len(inner.rstrip())
    return (start + left, start + right) if right > left else None


def _json_label_span(text: str) -> tuple[int, int] | None:
    decoder = json.JSONDecoder()
    key = text.find('"label"')
    while key >= 0:
        colon = text.find(":", key + len('"label"'))
        if colon < 0:
            return None
        start = colon + 1
        while start < len(text) and text[start] in " \t\r\n":
            start += 1
        try:
            _, end = decoder.raw_decode(text, start)
        except ValueError:
            key = text.find('"label"', key + 1)
            continue
        return start, end
    return None


def confidence(completion: Completion) -> tuple[float | None, str]:
    """``(probability of the label value, "")``, or ``(None, why there is none)``."""
    if not completion.logprobs:
        return None, NO_LOGPROBS
    text = completion.text
    span = label_span(text)
    if span is None:
        return None, NO_LABEL
    first = len(text[: span[0]].encode())
    last = len(text[: span[1]].encode())
    position, total, used = 0, 0.0, 0
    for token in completion.logprobs:
        size = len(token.bytes)
        if position + size > first and position < last:
            total += token.logprob
            used += 1
        position += size
    if not used or not math.isfinite(total):
        return None, NO_LOGPROBS
    return math.exp(total), ""
