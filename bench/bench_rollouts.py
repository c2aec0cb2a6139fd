"""GRPO rollouts from a merged copy against rollouts from the LoRA policy, on CPU.

The tiny model with all-linear LoRA (B drawn non-zero, as after training) decodes the
quickstart's held-out prompts greedily through the engine's trainer path (`generate_ids`, as
GRPO's rollouts do), once from the peft policy and once from its
`llmscisci_cfg.models.merged.MergedCopy`, whose `refresh` (run before every generation round
in training) is inside the timed region. The token ids must be equal (asserted); the figure is
the throughput ratio merged / policy (median of interleaved rounds). On CPU and eager this
measures what peft's layers cost per decode step; the compiled CUDA figure is bench.gpu's
(``grpo_bf16_merged`` against ``grpo_bf16``).
"""

from __future__ import annotations

from bench.bench_generate import _inputs
from bench.side_by_side import side_by_side


def lora_policy(model):
    import torch
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(0)
    for name, param in policy.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0.0, 0.02, generator=generator)
    return policy.eval()


def run(rows: int = 32, max_new_tokens: int = 64, repeats: int = 5) -> dict[str, float]:
    """Median merged/policy rollout throughput ratio; greedy ids asserted equal."""
    import torch

    from llmscisci_cfg.models.generate import Sampling, TransformersEngine
    from llmscisci_cfg.models.merged import MergedCopy

    torch.set_num_threads(1)
    model, tokenizer, texts = _inputs(rows)
    policy = lora_policy(model)
    merged = MergedCopy(policy)
    prompts = tokenizer(texts, add_special_tokens=False)["input_ids"]
    sampling = Sampling(max_new_tokens=max_new_tokens)

    def engine(m):
        return TransformersEngine(m, tokenizer, batch_size=16, compile="off", manage_model=False)

    on_policy, on_copy = engine(policy), engine(merged.model)

    def from_copy():
        merged.refresh()  # as before every generation round in training
        return on_copy.generate_ids(prompts, sampling)

    def same(expected, got):
        assert got == expected, "rollouts from the merged copy differ from the policy's"

    policy_s, merged_s = side_by_side(
        lambda: on_policy.generate_ids(prompts, sampling), from_copy, repeats, same
    )
    tokens = on_copy.stats.completion_tokens / (repeats + 1)
    return {
        "rollouts_policy_tokens_per_s": round(tokens / policy_s, 1),
        "rollouts_merged_tokens_per_s": round(tokens / merged_s, 1),
        "rollouts_merged_vs_policy": round(policy_s / merged_s, 3),
    }


if __name__ == "__main__":
    print(run())
