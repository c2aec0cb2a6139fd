"""Chat templates: the shipped ones, model families, rendering, and the loss mask.

Which template a recipe trains with is decided once, in `llmscisci_cfg.recipe.resolve`
(``template.file``, ``template.name``, else the model family's default); the tokenizer that
carries it is loaded by `llmscisci_cfg.models.load`. Shipped templates mark assistant content
and its end-of-turn token with ``{% generation %}``, so ``return_assistant_tokens_mask``
trains exactly those tokens.

>>> infer_family("google/gemma-3-1b-it"), infer_family("Qwen/Qwen2.5-0.5B-Instruct")
('gemma3', 'qwen2')
"""

from __future__ import annotations

import functools
import re
from typing import Any

from llmscisci_cfg.errors import UserError

Messages = list[dict[str, Any]]

SHIPPED = ("llama3", "gemma3", "chatml", "tiny")
TOKENIZER = "tokenizer"  # template.name that keeps the tokenizer's own template
FAMILY_TEMPLATE = {"llama3": "llama3", "gemma3": "gemma3", "qwen2": "chatml", "tiny": "tiny"}
_FAMILY_PATTERNS = (
    ("gemma3", re.compile(r"gemma[-_ ]?3(?!\d)")),
    ("llama3", re.compile(r"llama[-_ ]?3(?!\d)")),
    ("qwen2", re.compile(r"qwen[-_ ]?2(?!\d)")),
)
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
TRAINED_OPEN, TRAINED_CLOSE = "[[", "]]"  # how `preview` marks trained text
_DIM, _RESET = "\x1b[2m", "\x1b[0m"


# ----------------------------------------------------------------------------- families


def infer_family(name: str) -> str:
    """The template family a model name suggests: llama3, gemma3, qwen2, tiny, or other.

    >>> infer_family("meta-llama/Llama-3.2-1B-Instruct"), infer_family("builtin:tiny-gemma")
    ('llama3', 'tiny')
    """
    lowered = name.lower()
    if lowered.startswith("builtin:tiny"):
        return "tiny"
    for family, pattern in _FAMILY_PATTERNS:
        if pattern.search(lowered):
            return family
    return "other"


def has_generation_markers(text: str) -> bool:
    """Whether a template marks assistant output with ``{% generation %}`` (assistant-only loss)."""
    return _GENERATION.search(text) is not None


def shipped_template(name: str) -> str:
    """The text of a shipped template (``llama3``, ``gemma3``, ``chatml``, ``tiny``)."""
    from llmscisci_cfg.resources import shipped

    if name not in SHIPPED:
        choices = ", ".join((*SHIPPED, TOKENIZER))
        raise UserError(
            f"template.name: unknown template {name!r}; choose one of {choices}, or give template.file"
        )
    return shipped("templates", f"{name}.jinja").read_text(encoding="utf-8")


def own_template(tokenizer: Any, model: str) -> str:
    """The chat template a model's tokenizer carries (``template.name: tokenizer``)."""
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):
        own = own.get("default")
    if not own:
        raise UserError(
            f"template.name: 'tokenizer' keeps the model's own chat template, but the tokenizer of {model!r} "
            f"has none; use template.name ({', '.join(SHIPPED)}) or template.file"
        )
    return own


# ----------------------------------------------------------------------------- checking

_PROBE = {
    "system": "SYSTEM-PROBE-7f3a",
    "user": "USER-PROBE-7f3a",
    "assistant": "ANSWER-PROBE-7f3a",
}


def template_problems(text: str, assistant_only_loss: bool = False) -> list[str]:
    """What is wrong with a chat template, found by trial-rendering it in the bounded sandbox
    (no transformers import; in a memory- and time-capped child process): a syntax or runtime
    error, a runaway loop or a huge output, a template that does not show the conversation, and
    (for an assistant-only loss) one without ``{% generation %}`` markers. Empty when fine."""
    return list(_checked_template(text, assistant_only_loss))


@functools.lru_cache(maxsize=64)
def _checked_template(text: str, assistant_only_loss: bool) -> tuple[str, ...]:
    """`template_problems`, remembered per text: a process that loads many recipes (a server,
    a test session) checks each template once; the check is a pure function of the text."""
    from llmscisci_cfg import sandbox

    try:
        return tuple(sandbox.isolated(_template_problems, text, assistant_only_loss))
    except sandbox.TemplateBudgetError as exc:
        return (f"the chat template fails to render: {exc}",)


def _template_problems(text: str, assistant_only_loss: bool) -> list[str]:
    from jinja2 import TemplateError

    from llmscisci_cfg import sandbox

    conversation = [{"role": r, "content": c} for r, c in _PROBE.items()]
    specials = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
    try:
        full = sandbox.render_chat(
            text, messages=conversation, add_generation_prompt=False, **specials
        )
        prompt = sandbox.render_chat(
            text, messages=conversation[:2], add_generation_prompt=True, **specials
        )
    except TemplateError as exc:
        line = f" (template line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        return [f"the chat template fails to render{line}: {exc.message or exc}"]
    except Exception as exc:  # the template raised: 1/0, int('x'), ...
        return [f"the chat template fails to render: {type(exc).__name__}: {exc}"]
    problems = []
    if _PROBE["user"] not in full or _PROBE["assistant"] not in full:
        problems.append(
            "the chat template does not show the messages' contents; is it a chat template?"
        )
    elif _PROBE["assistant"] in prompt:
        problems.append("with add_generation_prompt the chat template still shows the answer")
    if assistant_only_loss and not has_generation_markers(text):
        problems.append(
            "method.assistant_only_loss needs {% generation %} … {% endgeneration %} around the "
            "assistant content in the chat template; use a shipped template "
            f"({', '.join(SHIPPED)}) or set method.assistant_only_loss: false"
        )
    return problems


# ----------------------------------------------------------------------------- rendering


def render(tokenizer: Any, messages: Messages, add_generation_prompt: bool = False) -> str:
    """The conversation as the chat template renders it (a template error is a `UserError`)."""
    from jinja2 import TemplateError

    from llmscisci_cfg.sandbox import budget

    try:
        with budget():
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
    except TemplateError as exc:
        raise UserError(f"chat template: {exc}") from None


def assistant_mask(tokenizer: Any, messages: Messages) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and its loss mask (1 = trained assistant token).

    The mask comes from the template's ``{% generation %}`` blocks; without them it is all 0.
    """
    from jinja2 import TemplateError

    from llmscisci_cfg.sandbox import budget

    try:
        with budget():
            out = tokenizer.apply_chat_template(
                messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
    except TemplateError as exc:
        raise UserError(f"chat template: {exc}") from None
    return list(out["input_ids"]), list(out["assistant_masks"])


def trained_text(tokenizer: Any, messages: Messages) -> str:
    """The decoded trained-on tokens only, e.g. ``'<think>…</label><|im_end|>'``."""
    ids, mask = assistant_mask(tokenizer, messages)
    return tokenizer.decode(
        [i for i, m in zip(ids, mask, strict=True) if m], skip_special_tokens=False
    )


def preview(tokenizer: Any, messages: Messages, color: bool = False) -> str:
    """The rendered conversation with the loss mask visible.

    Trained tokens are wrapped in ``[[ … ]]``; with ``color`` the masked (untrained) text is
    dimmed with ANSI codes instead. A first line counts the trained tokens.
    """
    ids, mask = assistant_mask(tokenizer, messages)
    head = f"[loss mask: {sum(mask)} of {len(mask)} tokens trained" + (
        "; untrained text dimmed]"
        if color
        else f"; trained text inside {TRAINED_OPEN} {TRAINED_CLOSE}]"
    )
    parts = []
    for text, trained in _runs(tokenizer, render(tokenizer, messages), ids, mask):
        if trained:
            parts.append(text if color else TRAINED_OPEN + text + TRAINED_CLOSE)
        else:
            parts.append(f"{_DIM}{text}{_RESET}" if color and text else text)
    return head + "\n" + "".join(parts)


def _runs(tokenizer: Any, text: str, ids: list[int], mask: list[int]) -> list[tuple[str, bool]]:
    """The rendered text cut into runs of untrained / trained tokens.

    Cuts by the tokenizer's character offsets, so the text is exactly the rendered one; falls
    back to decoding each run when offsets are not available.
    """
    cuts = [i for i in range(1, len(mask)) if mask[i] != mask[i - 1]]
    bounds = list(zip([0, *cuts], [*cuts, len(mask)], strict=True))
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"] if list(enc["input_ids"]) == ids else None
    except NotImplementedError:  # slow tokenizers have no offsets
        offsets = None
    if offsets is None:
        return [
            (tokenizer.decode(ids[a:b], skip_special_tokens=False), bool(mask[a]))
            for a, b in bounds
        ]
    starts = [0] + [offsets[c][0] for c in cuts] + [len(text)]
    return [(text[starts[k] : starts[k + 1]], bool(mask[a])) for k, (a, _) in enumerate(bounds)]
