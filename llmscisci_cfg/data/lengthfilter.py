"""Dropping over-long examples, by token counts under the recipe's chat template.

As in the research: compute the ``percentile`` (default 95th) of prompt tokens and of
prompt+completion tokens on the **train** split, and drop every example above either limit,
in train and test alike (test is filtered with the train limits). Absolute limits
(``max_prompt_tokens``, ``max_total_tokens``) replace the percentile for their dimension.

- prompt tokens: the prompt rendered with the generation prompt (what the model reads);
- total tokens: prompt + answer rendered as one conversation. DPO takes the longer of
  chosen and rejected. GRPO has no answer in the data (the policy writes it, bounded by
  ``method.max_completion_length``), so GRPO filters on prompt tokens only and ignores
  ``max_total_tokens``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from llmscisci_cfg.recipe.schema import LengthFilter

Row = dict
Messages = list[dict[str, str]]
#: Token counts of conversations: ``measure(conversations, add_generation_prompt) -> lengths``.
Measure = Callable[[list[Messages], bool], list[int]]

PROMPT_TOO_LONG = "prompt_too_long"
TOTAL_TOO_LONG = "total_too_long"
_ANSWERS = {"sft": ("completion",), "dpo": ("chosen", "rejected"), "grpo": ()}


@dataclass(frozen=True)
class Limits:
    """Largest kept token counts (None: no limit)."""

    prompt: int | None
    total: int | None


def percentile(values: list[int], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), pure Python.

    >>> percentile([1, 2, 3, 4, 5], 50)
    3.0
    >>> percentile([10, 20], 95)
    19.5
    """
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def lengths(rows: list[Row], method: str, measure: Measure) -> tuple[list[int], list[int] | None]:
    """Prompt token counts and (except GRPO) prompt+answer token counts of ``rows``."""
    prompts = measure([r["prompt"] for r in rows], True)
    answers = _ANSWERS[method]
    if not answers:
        return prompts, None
    per_answer = [measure([r["prompt"] + r[a] for r in rows], False) for a in answers]
    return prompts, [max(v) for v in zip(*per_answer, strict=True)]


def limits_for(spec: LengthFilter, prompt: list[int], total: list[int] | None) -> Limits:
    """Limits from absolute values, else the percentile of the (train) counts given."""

    def one(absolute: int | None, values: list[int] | None) -> int | None:
        if values is None:
            return None
        if absolute is not None:
            return absolute
        if spec.percentile is None or not values:
            return None
        return math.floor(percentile(values, spec.percentile))

    return Limits(
        prompt=one(spec.max_prompt_tokens, prompt), total=one(spec.max_total_tokens, total)
    )


def filter_splits(
    splits: dict[str, list[Row]], spec: LengthFilter, method: str, measure: Measure
) -> tuple[dict[str, list[Row]], Counter, Limits]:
    """Drop rows over the limits computed on ``splits['train']``; count drops by reason."""
    counts = {name: lengths(rows, method, measure) for name, rows in splits.items()}
    prompt, total = counts.get("train", ([], None if method == "grpo" else []))
    limits = limits_for(spec, prompt, total)
    dropped: Counter = Counter()
    kept: dict[str, list[Row]] = {}
    for name, rows in splits.items():
        p_len, t_len = counts[name]
        kept[name] = []
        for i, row in enumerate(rows):
            if limits.prompt is not None and p_len[i] > limits.prompt:
                dropped[PROMPT_TOO_LONG] += 1
            elif limits.total is not None and t_len is not None and t_len[i] > limits.total:
                dropped[TOTAL_TOO_LONG] += 1
            else:
                kept[name].append(row)
    return kept, dropped, limits


def token_measure(tokenizer) -> Measure:
    """A `Measure` that renders with the tokenizer's chat template and batch-tokenizes."""
    from llmscisci_cfg.models import chat

    def measure(conversations: list[Messages], add_generation_prompt: bool) -> list[int]:
        if not conversations:
            return []
        texts = [chat.render(tokenizer, c, add_generation_prompt) for c in conversations]
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    return measure
