"""The generation engine against the eval path it replaced, on the tiny model, on CPU.

Both generate greedily for the same prompts (the quickstart's held-out split, rendered with its
chat template); their outputs must be equal (asserted), and the figure is the throughput
ratio engine / baseline (median of interleaved rounds). The baseline is the eval path as it
was before the engine: sort by length, batches of 16, ``model.generate`` with the stop ids,
decode up to the first stop token.
"""

from __future__ import annotations

from bench.side_by_side import side_by_side


def baseline_generate(model, tokenizer, texts, *, batch_size, max_new_tokens, stops):
    """The eval generation path before the engine (kept here, verbatim in behaviour)."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stops,
    )
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out = [""] * len(texts)
    device = next(model.parameters()).device
    with torch.inference_mode():
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
                cut = next((k for k, t in enumerate(row) if t in stops), len(row))
                out[i] = tokenizer.decode(row[:cut], skip_special_tokens=False)
    return out


def _inputs(rows: int):
    from llmscisci_cfg.data.preprocess import build_dataset
    from llmscisci_cfg.models import chat
    from llmscisci_cfg.models.load import for_generation
    from llmscisci_cfg.models.tiny import build_tiny_model
    from llmscisci_cfg.recipe.loader import load_job
    from llmscisci_cfg.train import methods

    job = load_job("builtin:quickstart/sft_tiny")
    tokenizer = for_generation(job.tokenizer())
    data, _ = build_dataset(job, methods.get(job.method), tokenizer=tokenizer)
    prompts = [p for p in data["test"]["prompt"]][:rows]
    texts = [chat.render(tokenizer, p, add_generation_prompt=True) for p in prompts]
    return build_tiny_model("builtin:tiny", seed=0), tokenizer, texts


def run(rows: int = 48, max_new_tokens: int = 64, repeats: int = 5) -> dict[str, float]:
    """Median engine/baseline throughput ratio over interleaved rounds; outputs asserted equal."""
    import torch

    from llmscisci_cfg.models.generate import Request, Sampling, TransformersEngine, stop_ids

    torch.set_num_threads(1)
    model, tokenizer, texts = _inputs(rows)
    engine = TransformersEngine(model, tokenizer, batch_size=16)
    stops = stop_ids(model, tokenizer)
    requests = [Request(prompt=t, sampling=Sampling(max_new_tokens=max_new_tokens)) for t in texts]

    def baseline():
        return baseline_generate(
            model, tokenizer, texts, batch_size=16, max_new_tokens=max_new_tokens, stops=stops
        )

    def same(base, ours):
        assert ours == base, "the engine's greedy outputs differ from the eval path's"

    base_s, engine_s = side_by_side(
        baseline, lambda: [c[0].text for c in engine.generate(requests)], repeats, same
    )
    tokens = engine.stats.completion_tokens / (repeats + 1)
    return {
        "generate_rows": rows,
        "generate_baseline_tokens_per_s": round(tokens / base_s, 1),
        "generate_engine_tokens_per_s": round(tokens / engine_s, 1),
        "generate_engine_vs_baseline": round(base_s / engine_s, 3),
    }


if __name__ == "__main__":
    print(run())
