"""One section of one row to predict: its requests (by task kind) and how its answer is read.

- ``label``: the task's prompt (with ``k`` worked examples before it for few-shot), the
  ``<think>…</think><label>[…]</label>`` constraint; the prediction is the one-hot list.
- ``rationale``: the prompt shows the gold label; the prediction is the reasoning, kept only
  when the label the teacher repeats equals the gold one.
- ``extract``: the answer is a JSON object of the task's ``fields``, constrained to them; the
  prediction is the object (checked against the schema).
- ``judge``: pointwise, a score for one answer column; pairwise, the two answers are asked in
  both orders (A/B, then B/A) and the verdict kept only when both agree, else ``tie``.

A section longer than the prompt budget is cut by the recipe's strategy (`data.truncate`) and
marked; an empty section, a missing gold label or a missing answer is a reason, not a dropped
row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from llmscisci_cfg.data.truncate import TokenCount, fit, fit_text
from llmscisci_cfg.models.generate import Completion, Request, Sampling
from llmscisci_cfg.predict.shots import SHOT_TOKENS, Shot
from llmscisci_cfg.task.kinds import read_answer
from llmscisci_cfg.task.labels import encode_onehot
from llmscisci_cfg.task.spec import TaskSpec

#: Reasons a section gets no prediction.
EMPTY_TEXT = "empty_text"
NO_GOLD = "no_gold"
NO_ANSWER = "no_answer"


@dataclass
class Item:
    """One (row, aspect) to predict, or the reason it is not predicted."""

    row: int
    aspect: str
    id: str
    requests: list[Request] = field(default_factory=list)
    reason: str = ""
    truncated: bool = False
    shots: list[str] = field(default_factory=list)
    gold: list[int] | None = None

    def fingerprint(self) -> str:
        """sha256 of what this section asks: its id, the messages of each request (the text as
        cut, the gold shown, the answers judged, the worked examples) or why none is asked. A
        resumed run keeps an earlier answer only while the row still asks exactly this."""
        from llmscisci_cfg.digest import text_sha256

        asked = [r.messages if r.messages is not None else r.prompt for r in self.requests]
        return text_sha256(json.dumps([self.id, self.reason, asked], ensure_ascii=False))


@dataclass(frozen=True)
class Builder:
    """Everything needed to turn a section into requests: task, budget, sampling, render."""

    task: TaskSpec
    sampling: Sampling
    constraint: Any  # a structured.Constraint or None (structured output off)
    render: Any  # messages -> prompt text (the chat template), for counting tokens
    counter: TokenCount
    max_prompt_tokens: int | None
    strategy: str

    def messages(self, aspect: str, text: str, shots: list[Shot], **extra: Any) -> list[dict]:
        """System, the worked examples (user + answer each), then the section."""
        system, user = self.task.messages(aspect, text, **extra)
        shown = [system]
        for shot in shots:
            short, _ = fit_text(
                shot.text, SHOT_TOKENS, "head", self.counter.split, self.counter.join
            )
            shown.append(self.task.messages(aspect, short)[1])
            answer = self.task.completion("", shot.label, aspect)
            shown.append({"role": "assistant", "content": answer})
        return [*shown, user]

    def request(
        self, aspect: str, text: str, shots: list[Shot], **extra: Any
    ) -> tuple[Request, bool]:
        """The request for one section, its text cut to the budget; whether it was cut."""
        build = lambda t: self.messages(aspect, t, shots, **extra)  # noqa: E731
        truncated = False
        if self.max_prompt_tokens is not None:
            _, text, truncated = fit(
                lambda t: self.render(build(t)),
                text,
                self.max_prompt_tokens,
                self.strategy,
                self.counter,
            )
        return Request(
            messages=build(text), sampling=self.sampling, constraint=self.constraint
        ), truncated


def build_item(
    builder: Builder,
    row: int,
    aspect: str,
    doc: str,
    text: str,
    gold: list[int] | None = None,
    answers: list[Any] | None = None,
    shots: list[Shot] | None = None,
) -> Item:
    """The `Item` of one section for the builder's task kind."""
    item = Item(row, aspect, doc, gold=gold, shots=[s.id for s in shots or []])
    if not text:
        item.reason = EMPTY_TEXT
        return item
    kind = builder.task.kind
    if kind == "rationale":
        if gold is None:
            item.reason = NO_GOLD
            return item
        label_kind = builder.task.label_kind(aspect)
        counts = label_kind.counts(gold)
        names = [c for c in label_kind.categories if counts[c]]
        extra = {"gold": label_kind.render(gold), "gold_categories": names}
        request, item.truncated = builder.request(aspect, text, [], **extra)
        item.requests = [request]
    elif kind == "judge":
        shown = [_answer_text(a) for a in answers or []]
        if not shown or any(not a for a in shown):
            item.reason = NO_ANSWER
            return item
        if len(shown) == 1:
            request, item.truncated = builder.request(aspect, text, [], answer=shown[0])
            item.requests = [request]
        else:
            first, item.truncated = builder.request(
                aspect, text, [], answer_a=shown[0], answer_b=shown[1]
            )
            second, _ = builder.request(aspect, text, [], answer_a=shown[1], answer_b=shown[0])
            item.requests = [first, second]
    else:
        request, item.truncated = builder.request(aspect, text, shots or [])
        item.requests = [request]
    return item


def _answer_text(value: Any) -> str:
    """An answer cell as the judge sees it: a label list as text, a completion's label block,
    or the text itself."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return encode_onehot(list(value))
    text = str(value).strip()
    block = text.rfind("<label>")
    return text[block:] if block >= 0 else text


# ----------------------------------------------------------------------------- reading answers


@dataclass
class Outcome:
    """What one item became: the prediction (None when invalid or skipped) and its raw text."""

    pred: Any
    raw: Any
    valid: bool
    note: str = ""  # rationale: why it was dropped; judge pairwise: inconsistent


def read(task: TaskSpec, item: Item, completions: list[list[Completion]]) -> Outcome:
    """The prediction of ``item`` from its requests' completions (one list per request)."""
    texts = [c[0].text for c in completions]
    kind = task.kind
    if kind in ("label", "rationale"):
        label_kind = task.label_kind(item.aspect)
        answer = read_answer(texts[0], label_kind)
        label = answer.value
        if kind == "label":
            shown = label_kind.public(label) if label is not None else None
            return Outcome(shown, texts[0], label is not None)
        if label is None or _plain(label) != _plain(item.gold):
            why = "disagrees_with_gold" if label is not None else "invalid"
            return Outcome(None, texts[0], False, why)
        return Outcome(answer.think or "", texts[0], True)
    answers = [_json(t) for t in texts]
    if kind == "extract":
        from llmscisci_cfg.task.grammar import Constraint, check

        ok = answers[0] is not None and check(Constraint.json_schema(task.fields), texts[0])
        return Outcome(answers[0] if ok else None, texts[0], ok)
    if len(texts) == 1:
        score = (answers[0] or {}).get("score") if isinstance(answers[0], dict) else None
        valid = isinstance(score, int) and not isinstance(score, bool)
        return Outcome(score if valid else None, texts[0], valid)
    verdicts = [a.get("winner") if isinstance(a, dict) else None for a in answers]
    if None in verdicts:
        return Outcome(None, texts, False)
    flipped = {"A": "B", "B": "A", "tie": "tie"}[verdicts[1]]
    if verdicts[0] == flipped:
        return Outcome(verdicts[0], texts, True)
    return Outcome("tie", texts, True, "inconsistent")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
