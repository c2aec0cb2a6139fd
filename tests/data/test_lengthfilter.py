"""Length filtering: percentile on train, absolute limits, test filtered with train limits, counts."""

from __future__ import annotations

import pytest

from llmscisci_cfg.data.lengthfilter import filter_splits, lengths, limits_for, percentile
from llmscisci_cfg.recipe.schema import LengthFilter


def words(conversations, add_generation_prompt):
    """A stand-in tokenizer: one token per word, plus one for the generation prompt."""
    return [
        sum(len(m["content"].split()) for m in c) + int(add_generation_prompt)
        for c in conversations
    ]


def row(prompt_words: int, answer_words: int = 1, rejected_words: int | None = None) -> dict:
    r = {
        "prompt": [{"role": "user", "content": " ".join(["w"] * prompt_words)}],
        "completion": [{"role": "assistant", "content": " ".join(["a"] * answer_words)}],
    }
    r["chosen"] = r["completion"]
    r["rejected"] = [
        {"role": "assistant", "content": " ".join(["r"] * (rejected_words or answer_words))}
    ]
    return r


def test_percentile_matches_numpy():
    import numpy as np

    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    for q in (1, 25, 50, 90, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_lengths_per_method():
    rows = [row(3, 2, 5)]
    assert lengths(rows, "sft", words) == ([4], [5])
    assert lengths(rows, "dpo", words) == ([4], [8])  # the longer of chosen and rejected
    assert lengths(rows, "grpo", words) == ([4], None)


def test_percentile_on_train_applies_to_test():
    train = [row(n) for n in range(1, 21)]  # prompt tokens 2..21
    test = [row(5), row(21), row(30)]
    spec = LengthFilter(percentile=50)
    kept, dropped, limits = filter_splits({"train": train, "test": test}, spec, "sft", words)
    assert limits.prompt == 11  # floor of the median of 2..21 (11.5)
    assert limits.total == 11  # prompt + one answer word, no generation prompt: 2..21
    assert len(kept["train"]) == 10 and [
        len(r["prompt"][0]["content"].split()) for r in kept["test"]
    ] == [5]
    assert dict(dropped) == {"prompt_too_long": 12}


def test_total_limit_counted_separately():
    rows = [row(5, 1), row(5, 50), row(5, 2)]
    spec = LengthFilter(percentile=None, max_total_tokens=10)
    kept, dropped, limits = filter_splits({"train": rows, "test": []}, spec, "sft", words)
    assert limits.prompt is None and limits.total == 10
    assert dict(dropped) == {"total_too_long": 1} and len(kept["train"]) == 2


def test_absolute_limits_override_percentile():
    spec = LengthFilter(percentile=10, max_prompt_tokens=100)
    assert limits_for(spec, [1, 2, 300], [5, 6, 700]).prompt == 100
    assert limits_for(spec, [1, 2, 300], [5, 6, 700]).total == 5  # percentile still sets total


def test_grpo_filters_on_prompt_only():
    rows = [row(n, 500) for n in range(1, 11)]
    spec = LengthFilter(percentile=95, max_total_tokens=3)
    kept, dropped, limits = filter_splits({"train": rows, "test": []}, spec, "grpo", words)
    assert limits.total is None and limits.prompt == 10
    assert dict(dropped) == {"prompt_too_long": 1} and len(kept["train"]) == 9


def test_dpo_uses_longer_answer():
    rows = [row(2, 1, 1), row(2, 1, 40)]
    kept, dropped, _ = filter_splits(
        {"train": rows}, LengthFilter(percentile=None, max_total_tokens=10), "dpo", words
    )
    assert dict(dropped) == {"total_too_long": 1} and kept["train"] == [rows[0]]


def test_empty_train_means_no_limit():
    kept, dropped, limits = filter_splits(
        {"train": [], "test": [row(99)]}, LengthFilter(), "sft", words
    )
    assert limits.prompt is None and not dropped and len(kept["test"]) == 1
