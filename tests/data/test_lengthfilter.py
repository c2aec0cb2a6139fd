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


def _filter(*args, **kwargs):
    """`filter_splits` as (kept, dropped, limits)."""
    out = filter_splits(*args, **kwargs)
    return out.kept, out.dropped, out.limits


def test_percentile_matches_numpy():
    import numpy as np

    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    for q in (1, 25, 50, 90, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_lengths_per_method():
    rows = [row(3, 2, 5)]
    assert lengths(rows, ("completion",), words) == ([4], [5])
    assert lengths(rows, ("chosen", "rejected"), words) == (
        [4],
        [8],
    )  # the longer of chosen and rejected
    assert lengths(rows, (), words) == ([4], None)


def test_percentile_on_train_applies_to_test():
    train = [row(n) for n in range(1, 21)]  # prompt tokens 2..21
    test = [row(5), row(21), row(30)]
    spec = LengthFilter(percentile=50)
    kept, dropped, limits = _filter({"train": train, "test": test}, spec, ("completion",), words)
    assert limits.prompt == 11  # floor of the median of 2..21 (11.5)
    assert limits.total == 11  # prompt + one answer word, no generation prompt: 2..21
    assert len(kept["train"]) == 10 and [
        len(r["prompt"][0]["content"].split()) for r in kept["test"]
    ] == [5]
    assert dict(dropped) == {"prompt_too_long": 12}


def test_total_limit_counted_separately():
    rows = [row(5, 1), row(5, 50), row(5, 2)]
    spec = LengthFilter(percentile=None, max_total_tokens=10)
    kept, dropped, limits = _filter({"train": rows, "test": []}, spec, ("completion",), words)
    assert limits.prompt is None and limits.total == 10
    assert dict(dropped) == {"total_too_long": 1} and len(kept["train"]) == 2


def test_absolute_limits_override_percentile():
    spec = LengthFilter(percentile=10, max_prompt_tokens=100)
    assert limits_for(spec, [1, 2, 300], [5, 6, 700]).prompt == 100
    assert limits_for(spec, [1, 2, 300], [5, 6, 700]).total == 5  # percentile still sets total


def test_grpo_filters_on_prompt_only():
    rows = [row(n, 500) for n in range(1, 11)]
    spec = LengthFilter(percentile=95, max_total_tokens=3)
    kept, dropped, limits = _filter({"train": rows, "test": []}, spec, (), words)
    assert limits.total is None and limits.prompt == 10
    assert dict(dropped) == {"prompt_too_long": 1} and len(kept["train"]) == 9


def test_dpo_uses_longer_answer():
    rows = [row(2, 1, 1), row(2, 1, 40)]
    kept, dropped, _ = _filter(
        {"train": rows},
        LengthFilter(percentile=None, max_total_tokens=10),
        ("chosen", "rejected"),
        words,
    )
    assert dict(dropped) == {"total_too_long": 1} and kept["train"] == [rows[0]]


def test_empty_train_means_no_limit():
    kept, dropped, limits = _filter(
        {"train": [], "test": [row(99)]}, LengthFilter(), ("completion",), words
    )
    assert limits.prompt is None and not dropped and len(kept["test"]) == 1


# ----------------------------------------------------------------------------- strategy truncate


def doc(i: int, aspect: str, prompt_words: int, answer_words: int = 1) -> dict:
    """A `row` with an id, an aspect and its section (the prompt's words) as ``text``."""
    r = row(prompt_words, answer_words)
    return r | {"id": f"d{i}", "aspect": aspect, "text": r["prompt"][0]["content"]}


def keep_words(r: dict, max_tokens: int) -> dict:
    """A stand-in `Fit`: the first words of the section, as many as the budget allows
    (`words` counts one token more for the generation prompt)."""
    cut = " ".join(r["text"].split()[: max(max_tokens - 1, 0)])
    return r | {"prompt": [{"role": "user", "content": cut}]}


def _tokens(r: dict) -> int:
    return words([r["prompt"]], True)[0]


def test_truncate_keeps_every_example_within_the_limit():
    train = [doc(i, "easy", n) for i, n in enumerate([3, 5, 40])]
    test = [doc(7, "easy", 50), doc(7, "difficult", 4)]
    spec = LengthFilter(percentile=None, max_prompt_tokens=10, strategy="truncate")
    out = filter_splits({"train": train, "test": test}, spec, (), words, keep_words)
    assert not out.dropped and out.excluded == {"train": [], "test": []}
    assert [len(out.kept[s]) for s in ("train", "test")] == [3, 2]  # nobody moved or lost
    assert all(_tokens(r) <= 10 for rows in out.kept.values() for r in rows)
    assert out.kept["test"][0]["id"] == "d7" and _tokens(out.kept["test"][0]) == 10
    assert out.kept["test"][0]["text"] == test[0]["text"]  # the section as read is kept
    assert out.counts == {
        "train": {"easy": {"truncated": 1}},
        "test": {"easy": {"truncated": 1}, "difficult": {}},
    }


def test_drop_lists_the_excluded_test_examples():
    test = [doc(1, "easy", 50), doc(1, "difficult", 4)]
    spec = LengthFilter(percentile=None, max_prompt_tokens=10)  # strategy drop (the default)
    out = filter_splits({"train": [], "test": test}, spec, (), words, keep_words)
    assert spec.strategy == "drop" and out.kept["test"] == [test[1]]
    assert out.excluded["test"] == [("d1", "easy", "prompt_too_long")]
    assert out.counts["test"] == {"easy": {"prompt_too_long": 1}, "difficult": {}}


def test_truncate_leaves_room_for_the_answer():
    # total = prompt words + answer words; the answer (20) is never cut, the section is
    rows = [doc(0, "easy", 30, 20), doc(1, "easy", 3, 2)]
    spec = LengthFilter(percentile=None, max_total_tokens=30, strategy="truncate")
    out = filter_splits({"train": rows, "test": []}, spec, ("completion",), words, keep_words)
    cut = out.kept["train"][0]
    assert not out.dropped and lengths([cut], ("completion",), words)[1] == [30]
    assert out.counts["train"] == {"easy": {"truncated": 1}}


def test_truncate_drops_what_cannot_fit():
    rows = [doc(0, "easy", 5, 40)]  # the answer alone is over the total limit
    spec = LengthFilter(percentile=None, max_total_tokens=30, strategy="truncate")
    out = filter_splits({"train": [], "test": rows}, spec, ("completion",), words, keep_words)
    assert out.kept["test"] == [] and out.excluded["test"] == [("d0", "easy", "total_too_long")]
    assert dict(out.dropped) == {"total_too_long": 1}
