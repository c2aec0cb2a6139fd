"""Prompts and their token counts at corpus scale, exact.

Rendering the task's prompt (sandboxed Jinja), then the chat template, then tokenizing the
whole conversation costs about a millisecond an example; a 100,000-row corpus has 200,000.
`Prompts` does the same work once per aspect and then only the part that changes:

- **The task's prompt.** When the user prompt uses ``text`` only as a plain ``{{ text }}``
  (checked on the template's syntax tree), the prompt is rendered once with a marker in its
  place and each section is put where the marker is: Jinja writes ``str(text)`` there and
  nothing else depends on it, so this is the render, not an estimate.
- **The chat template.** One of the shipped templates (`models.chat.SHIPPED`, compared by
  text) puts message content in verbatim or ``| trim``-med, and the section is stripped and
  sits inside the task's prompt; so the rendered conversation is rendered once with markers
  and filled in the same way. Any other template renders every conversation.
- **Token counts.** A fast tokenizer splits its input at added tokens (``<|im_start|>``,
  ``<start_of_turn>`` …) before it normalizes or pre-tokenizes anything, so the tokens
  between two of them depend only on the text between them. Only the stretch from the added
  token before each changing part to the one after it is tokenized per example; the rest is
  counted once. The first examples of every build are also counted the plain way
  (render + tokenize) and must agree, else the plain way is used throughout.

`plain_measure` is the plain way: render every conversation and tokenize it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Messages = list[dict[str, str]]
#: Token counts of conversations: ``measure(conversations, add_generation_prompt) -> lengths``.
Measure = Callable[[list[Messages], bool], list[int]]

#: Stands for the changing text while a template is rendered once (never in a real prompt).
MARK = "\ue000llmscisci-{}\ue001"
#: Examples per build that are also counted the plain way (the fast way must agree).
CHECKED = 8


def plain_measure(tokenizer: Any) -> Measure:
    """A `Measure` that renders each conversation with the tokenizer's chat template and
    batch-tokenizes the texts."""
    from llmscisci_cfg.models import chat

    encode = batch_encoder(tokenizer)

    def measure(conversations: list[Messages], add_generation_prompt: bool) -> list[int]:
        if not conversations:
            return []
        return encode([chat.render(tokenizer, c, add_generation_prompt) for c in conversations])

    return measure


def batch_encoder(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Token counts of texts, without special tokens added: the Rust tokenizer's batch encode
    when there is one (no Python objects per token), else the tokenizer's ``__call__``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and not getattr(tokenizer, "split_special_tokens", False):
        return lambda texts: [len(e.ids) for e in backend.encode_batch(texts, False)]

    def encode(texts: list[str]) -> list[int]:
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    return encode


# ----------------------------------------------------------------------------- prompts


def text_is_plain(source: str) -> bool:
    """Whether a task template uses ``text`` only as a whole ``{{ text }}`` expression (not in
    a filter, a test, a condition, a loop or an assignment), so that rendering it once with a
    marker and filling in the section gives exactly what rendering with the section would.

    >>> text_is_plain("<text>\\n{{ text }}\\n</text>"), text_is_plain("{{ text | upper }}")
    (True, False)
    """
    from jinja2 import nodes

    from llmscisci_cfg.sandbox import task_environment

    try:
        tree = task_environment().parse(source)
    except Exception:  # a syntax error: the plain render reports it
        return False
    plain = {
        id(child)
        for output in tree.find_all(nodes.Output)
        for child in output.nodes
        if isinstance(child, nodes.Name) and child.name == "text"
    }
    uses = [n for n in tree.find_all(nodes.Name) if n.name == "text"]
    return bool(uses) and all(id(n) in plain for n in uses)


@dataclass
class _Form:
    """One aspect's prompt rendered with a marker for the section: the system message and
    the user message split at the marker."""

    system: str
    before: str
    after: str


@dataclass
class Prompts:
    """The task's prompt messages for sections, and token counts of conversations, exact and
    fast (see the module docstring). One per build: it holds the tokenizer and the task."""

    tokenizer: Any
    task: Any  # TaskSpec
    _forms: dict[str, _Form | None] = field(default_factory=dict)
    _windows: dict[tuple, Any] = field(default_factory=dict)
    checked: int = 0  # examples counted both ways so far
    fast: bool = True  # False once a check disagreed (or the fast way cannot apply)

    def __post_init__(self) -> None:
        self.plain = plain_measure(self.tokenizer)
        self.encode = batch_encoder(self.tokenizer)
        self._plain_text = text_is_plain(self.task.user_prompt)
        self._shipped = _shipped_template(getattr(self.tokenizer, "chat_template", None))

    # -------------------------------------------------------------- messages

    def messages(self, aspect: str, text: str) -> Messages:
        """``task.messages(aspect, text)``, from the aspect's rendered form when it has one."""
        form = self._form(aspect)
        text = text.strip()
        size = len(form.before) + len(text) + len(form.after) if form is not None else 0
        if form is None or not text or size > _max_output() - 1024:
            return self.task.messages(aspect, text)
        return [
            {"role": "system", "content": form.system},
            {"role": "user", "content": form.before + text + form.after},
        ]

    def _form(self, aspect: str) -> _Form | None:
        if aspect not in self._forms:
            self._forms[aspect] = None
            if self._plain_text:
                mark = MARK.format("text")
                system, user = self.task.messages(aspect, mark)
                parts = user["content"].split(mark)
                if len(parts) == 2 and mark not in system["content"]:
                    self._forms[aspect] = _Form(system["content"], parts[0], parts[1])
        return self._forms[aspect]

    # -------------------------------------------------------------- token counts

    def lengths(
        self, rows: Sequence[dict], answers: tuple[str, ...]
    ) -> tuple[list[int], list[int] | None]:
        """Prompt tokens (with the generation prompt) of ``rows`` and, when the method has
        ``answers`` (its answer columns; none for GRPO), prompt + answer tokens (DPO: the longer
        of chosen and rejected). Rows carry ``aspect``, ``text`` (the section in the prompt)
        and ``prompt``, plus the answer columns."""
        prompts = self._count(rows, ())
        if not answers:
            return prompts, None
        per = [self._count(rows, (a,)) for a in answers]
        return prompts, [max(v) for v in zip(*per, strict=True)]

    def _count(self, rows: Sequence[dict], answers: tuple[str, ...]) -> list[int]:
        if not rows:
            return []
        counts: list[int | None] = [None] * len(rows)
        if self.fast:
            self._windowed(rows, answers, counts)
            done = [i for i, n in enumerate(counts) if n is not None]
            if done and self.checked < CHECKED:
                sample = done[: CHECKED - self.checked]
                if self._plain([rows[i] for i in sample], answers) != [counts[i] for i in sample]:
                    self.fast = False  # the fast way disagrees: count everything the plain way
                    counts = [None] * len(rows)
                else:
                    self.checked += len(sample)
        rest = [i for i, n in enumerate(counts) if n is None]
        for i, n in zip(rest, self._plain([rows[i] for i in rest], answers), strict=True):
            counts[i] = n
        return counts  # type: ignore[return-value]

    def _plain(self, rows: Sequence[dict], answers: tuple[str, ...]) -> list[int]:
        conversations = [r["prompt"] + (r[answers[0]] if answers else []) for r in rows]
        return self.plain(conversations, not answers)

    def _windowed(
        self, rows: Sequence[dict], answers: tuple[str, ...], counts: list[int | None]
    ) -> None:
        """Fill ``counts`` for the rows whose conversation is their aspect's rendered form
        filled in (not a cut section, answers as the templates read them)."""
        if not self._shipped:
            return
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row["aspect"], []).append(i)
        for aspect, members in groups.items():
            win = self._window(aspect, answers)
            if win is None:
                continue
            chosen, texts = [], []
            for i in members:
                row = rows[i]
                parts = [row["text"].strip()] + [_content(row[a]) for a in answers]
                if (
                    None in parts
                    or not parts[0]
                    or row["prompt"] != self.messages(aspect, parts[0])
                ):
                    continue
                chosen.append(i)
                texts.append(win.fill(parts))
            for i, n in zip(chosen, self.encode(texts) if texts else [], strict=True):
                counts[i] = win.constant + n

    def _window(self, aspect: str, answers: tuple[str, ...]) -> _Window | None:
        key = (aspect, answers)
        if key not in self._windows:
            self._windows[key] = self._make_window(aspect, answers)
        return self._windows[key]

    def _make_window(self, aspect: str, answers: tuple[str, ...]) -> _Window | None:
        from llmscisci_cfg.models import chat

        form = self._form(aspect)
        if form is None:
            return None
        marks = [MARK.format(i) for i in range(1 + len(answers))]
        conversation = self.messages(aspect, marks[0]) + [
            {"role": "assistant", "content": m} for m in marks[1:]
        ]
        rendered = chat.render(self.tokenizer, conversation, not answers)
        window = _Window.around(rendered, marks, _boundaries(self.tokenizer, rendered))
        if window is None:
            return None
        whole, inside = self.encode([rendered, window.fill(marks)])
        window.constant = whole - inside
        return window


@dataclass
class _Window:
    """The rendered conversation cut into fixed text and the stretches around each changing
    part, each stretch running from an added token to an added token."""

    template: list[str]  # fixed text between the changing parts, inside the stretches
    stretches: list[list[int]]  # for each stretch, the changing parts it holds
    constant: int = 0  # tokens outside the stretches

    @classmethod
    def around(cls, rendered: str, marks: list[str], tokens: list[str]) -> _Window | None:
        positions = [rendered.find(m) for m in marks]
        if any(p < 0 or rendered.count(m) != 1 for p, m in zip(positions, marks, strict=True)):
            return None
        if positions != sorted(positions):
            return None
        spans = []
        for p, m in zip(positions, marks, strict=True):
            start = max((rendered.rfind(t, 0, p) for t in tokens), default=-1)
            ends = [e for e in (rendered.find(t, p + len(m)) for t in tokens) if e >= 0]
            if start < 0 or not ends:
                return None
            end = min(ends)
            end += len(next(t for t in tokens if rendered.startswith(t, end)))
            spans.append([start, end])
        merged: list[list[int]] = []
        for span in spans:  # stretches that share text become one
            if merged and span[0] < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], span[1])
            else:
                merged.append(span)
        template, stretches = [], []
        for start, end in merged:
            inside = [i for i, p in enumerate(positions) if start <= p < end]
            text, parts = rendered[start:end], []
            for i in inside:
                before, text = text.split(marks[i], 1)
                parts.append(before)
            parts.append(text)
            template.append(parts)
            stretches.append(inside)
        return cls(template, stretches)

    def pieces(self, values: list[str]) -> list[str]:
        """The stretches' texts with ``values`` for the changing parts."""
        out = []
        for parts, inside in zip(self.template, self.stretches, strict=True):
            text = parts[0]
            for k, i in enumerate(inside):
                text += values[i] + parts[k + 1]
            out.append(text)
        return out

    def fill(self, values: list[str]) -> str:
        """The stretches of one example joined by an added token's worth of nothing: each is
        tokenized on its own (they are separated by added tokens in the real conversation)."""
        return "".join(self.pieces(values))


def _content(messages: Any) -> str | None:
    """The content of a one-message answer, stripped (what the shipped templates read)."""
    if isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], dict):
        content = messages[0].get("content")
        if isinstance(content, str) and content == content.strip() and content:
            return content
    return None


def _boundaries(tokenizer: Any, rendered: str) -> list[str]:
    """The added tokens in ``rendered`` that the tokenizer always splits at: matched as
    written (not normalized, no whitespace stripping, not whole-word only), and overlapping no
    other added token (which could be matched instead of it)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "split_special_tokens", False):
        return []
    added = [t for t in backend.get_added_tokens_decoder().values() if t.content]
    every = [t.content for t in added]
    found = [
        t.content
        for t in added
        if t.content in rendered
        and not (t.normalized or t.lstrip or t.rstrip or t.single_word)
        and not any(_overlap(t.content, other) for other in every if other != t.content)
    ]
    return sorted(found, key=len, reverse=True)


def _overlap(a: str, b: str) -> bool:
    """Whether ``b`` contains ``a``, or an end of one is the start of the other.

    >>> _overlap("<|im_end|>", "x<|im"), _overlap("<|im_end|>", "<|im_start|>")
    (True, False)
    """
    if a in b:
        return True
    return any(b.endswith(a[:k]) or b.startswith(a[-k:]) for k in range(1, len(a)))


@functools.cache
def _max_output() -> int:
    from llmscisci_cfg.sandbox import MAX_OUTPUT

    return MAX_OUTPUT


@functools.lru_cache(maxsize=8)
def _shipped_texts() -> frozenset[str]:
    from llmscisci_cfg.models import chat

    return frozenset(chat.shipped_template(name) for name in chat.SHIPPED)


def _shipped_template(text: str | None) -> bool:
    return text is not None and text in _shipped_texts()
