"""The merged copy GRPO's rollouts may decode (`llmscisci_cfg.models.merged`)."""

from __future__ import annotations

import pytest
import torch

from llmscisci_cfg.models.merged import MergedCopy
from llmscisci_cfg.models.tiny import build_tiny_model, load_tiny_tokenizer, save_tiny, tiny_config

IDS = torch.tensor([[5, 17, 40, 8, 93, 21, 60, 12], [7, 7, 30, 44, 2, 81, 19, 50]])


def lora_policy(model, bias: str = "none", targets="all-linear", fresh: bool = False, **kw):
    """``model`` with LoRA whose B is not zero (unless ``fresh``: then it is a no-op)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, bias=bias, target_modules=targets, **kw)
    policy = get_peft_model(model, config)
    torch.manual_seed(1)
    for name, param in policy.named_parameters():
        if "lora_B" in name or "lora_embedding_B" in name:
            torch.nn.init.normal_(param, std=0.0 if fresh else 0.05)
    return policy.eval()


def logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits.float()


def family_model(family: str, dtype=torch.float32):
    """A model of a shipped recipe's family at the built-in tiny sizes (bench.gpu's smoke)."""
    from transformers import AutoModelForCausalLM

    from bench import gpu

    torch.manual_seed(0)
    config = gpu.model_config(gpu.SHAPES[family], smoke=True)
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


def test_the_copy_computes_what_the_policy_computes_and_follows_its_updates():
    policy = lora_policy(build_tiny_model("builtin:tiny"))
    merged = MergedCopy(policy)
    assert torch.allclose(logits(merged.model), logits(policy), atol=1e-5)
    for name, param in policy.named_parameters():  # what an optimizer step does
        if "lora_A" in name:
            param.data.add_(0.1)
    after = logits(policy)
    assert not torch.allclose(logits(merged.model), after, atol=1e-2)  # stale until refreshed
    merged.refresh()
    assert torch.allclose(logits(merged.model), after, atol=1e-5)
    # nothing of the policy was written to: its base weights are what they were
    assert torch.allclose(logits(policy), after)


FAMILIES = ["gemma3_1b", "qwen25_1_5b"]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_shipped_recipes_families_are_copied(family):
    """Gemma 3 (q/k norms, sliding layers, scaled embeddings) and Qwen2 (q/k/v biases)."""
    policy = lora_policy(family_model(family))
    merged = MergedCopy(policy)
    assert type(merged.model) is type(policy.get_base_model())
    assert torch.allclose(logits(merged.model), logits(policy), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_copy_of_a_fresh_adapter_is_exact_over_long_sequences(family):
    """Nothing but the merge may round: the rotary tables stay float32 as transformers keeps
    them (cast to bf16 they shift positions, visibly so over a thousand tokens)."""
    policy = lora_policy(family_model(family, torch.bfloat16), fresh=True)
    merged = MergedCopy(policy)
    ids = torch.randint(5, 200, (1, 1024), generator=torch.Generator().manual_seed(0))
    assert torch.equal(logits(merged.model, ids), logits(policy, ids))


@pytest.mark.parametrize(
    ("family", "targets"),
    [
        ("gemma3_1b", ["embed_tokens", "q_proj"]),  # Gemma's scaled embedding keeps its scale
        ("qwen25_1_5b", ["embed_tokens", "lm_head", "v_proj"]),
    ],
)
def test_adapted_embeddings_and_lm_head_are_merged(family, targets):
    policy = lora_policy(family_model(family), targets=targets)
    merged = MergedCopy(policy)
    assert torch.allclose(logits(merged.model), logits(policy), atol=1e-5)


def test_peft_features_the_copy_cannot_reproduce_are_refused():
    with pytest.raises(ValueError, match="DoRA"):
        MergedCopy(lora_policy(build_tiny_model("builtin:tiny"), use_dora=True))


def test_only_the_adapted_layers_are_copied():
    policy = lora_policy(build_tiny_model("builtin:tiny"))
    merged = MergedCopy(policy)
    base = policy.get_base_model()
    copy_embed = merged.model.get_input_embeddings().weight
    assert copy_embed is base.get_input_embeddings().weight  # shared, not copied
    assert merged.model.lm_head.weight is copy_embed  # tied embeddings stay tied
    adapted = [m for n, m in base.named_modules() if n.endswith("_proj") and hasattr(m, "lora_A")]
    assert adapted and merged.added_bytes == sum(
        m.get_base_layer().weight.numel() * 4 for m in adapted
    )
    assert not any(p.requires_grad for p in merged.model.parameters())
    assert not any("lora" in n for n, _ in merged.model.named_parameters())


def test_trained_biases_are_shared():
    from transformers import AutoModelForCausalLM

    config = tiny_config("builtin:tiny")
    config.attention_bias = config.mlp_bias = True
    policy = lora_policy(AutoModelForCausalLM.from_config(config), bias="all")
    merged = MergedCopy(policy)
    q = policy.get_base_model().model.layers[0].self_attn.q_proj
    q.get_base_layer().bias.data.add_(0.5)  # trained in place, no refresh needed
    assert torch.allclose(logits(merged.model), logits(policy), atol=1e-5)


def test_upcast_norms_get_a_cast_copy():
    """peft's k-bit preparation leaves norms in float32 under bf16 linears: a plain linear
    would then see float32 inputs; the copy casts them to the compute dtype."""
    policy = lora_policy(build_tiny_model("builtin:tiny").to(torch.bfloat16))
    for name, param in policy.named_parameters():
        if "norm" in name:
            param.data = param.data.float()
    merged = MergedCopy(policy)
    assert merged.dtype == torch.bfloat16
    assert {p.dtype for p in merged.model.parameters()} == {torch.bfloat16}
    base_norm = policy.get_base_model().model.norm.weight
    base_norm.data.mul_(1.5)
    merged.refresh()
    assert torch.equal(merged.model.model.norm.weight, base_norm.to(torch.bfloat16))
    got = logits(merged.model)  # runs: the policy itself would not (plain bf16 linears)
    for name, param in policy.named_parameters():
        if "norm" in name:
            param.data = param.data.to(torch.bfloat16)
    expected = logits(policy)  # merged in bf16 rounds unlike two bf16 matmuls: ~1% of range
    assert (got - expected).abs().max() < 0.02 * expected.abs().max()


def test_a_4bit_base_becomes_dense_in_its_compute_dtype(tmp_path):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    save_tiny("builtin:tiny", tmp_path)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            tmp_path, quantization_config=quant, dtype=torch.bfloat16
        )
    except Exception as exc:  # bitsandbytes without its CPU backend
        pytest.skip(f"bitsandbytes cannot quantize on this CPU: {exc}")
    policy = lora_policy(model)
    merged = MergedCopy(policy)
    assert merged.dtype == torch.float32  # bitsandbytes' compute dtype, not the model's bf16
    assert {p.dtype for p in merged.model.parameters()} == {torch.float32}
    assert not any(type(p).__name__ == "Params4bit" for p in merged.model.parameters())
    expected = logits(policy)  # bitsandbytes' CPU kernel and bf16 norms round differently
    assert (logits(merged.model) - expected).abs().max() < 0.02 * expected.abs().max()


def test_greedy_rollouts_from_the_copy_equal_the_policys():
    from llmscisci_cfg.models.generate import Sampling, TransformersEngine

    policy = lora_policy(build_tiny_model("builtin:tiny"))
    merged = MergedCopy(policy)
    prompts = [IDS[0].tolist(), IDS[1].tolist()[:5]]
    sampling = Sampling(max_new_tokens=12)
    engines = [
        TransformersEngine(m, load_tiny_tokenizer(), compile="off", manage_model=False)
        for m in (policy, merged.model)
    ]
    got = [e.generate_ids(prompts, sampling) for e in engines]
    assert got[0] == got[1] and all(got[0])
