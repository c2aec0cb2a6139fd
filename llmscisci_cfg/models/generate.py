"""The one place that generates: batched, left-padded, greedy completions of rendered prompts.

Eval calls it today; predict, serve and the GRPO rollouts are meant to share it.
Prompts are sorted longest first (an out-of-memory error shows in the first batch, and rows of
similar length share a batch), generated ``batch_size`` at a time with a progress bar, cut at
the first stop token, and returned in input order.
"""

from __future__ import annotations

from typing import Any

from llmscisci_cfg.models.tiny import END_OF_TURN


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a completion: the model's and tokenizer's EOS and known end-of-turn tokens."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        ids += value if isinstance(value, list) else [value] if value is not None else []
    added = tokenizer.get_added_vocab()  # special tokens only, never a piece of plain text
    ids += [added[t] for t in END_OF_TURN if t in added]
    return list(dict.fromkeys(ids))


def generate(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    desc: str = "generate",
) -> list[str]:
    """Greedy completions of ``texts`` (rendered prompts), in input order."""
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    stops = stop_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stops,
    )
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # longest first: OOM shows early
    out: list[str] = [""] * len(texts)
    device = next(model.parameters()).device
    with tqdm(total=len(texts), desc=desc, unit="ex") as bar, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in batch],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(device)
            ids = model.generate(**enc, generation_config=config)[:, enc["input_ids"].shape[1] :]
            for i, row in zip(batch, ids.tolist(), strict=True):
                out[i] = tokenizer.decode(until_stop(row, stops), skip_special_tokens=False)
            bar.update(len(batch))
    return out


def until_stop(ids: list[int], stops: list[int]) -> list[int]:
    """``ids`` up to (not including) the first stop token."""
    cut = next((k for k, t in enumerate(ids) if t in stops), len(ids))
    return ids[:cut]
