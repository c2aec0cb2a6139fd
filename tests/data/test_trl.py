"""The built datasets go straight into TRL's trainers (one optimizer step each on the tiny model)."""

from __future__ import annotations

import pytest

from tests.data_helpers import make_job

pytestmark = pytest.mark.slow


def _setup(tmp_path, method, **data):
    from llmscisci_cfg.models import tiny
    from tests.data_helpers import build_dataset

    recipe = make_job(tmp_path, "builtin:sample", method=method, **data)
    tokenizer = recipe.tokenizer()
    dataset, _ = build_dataset(recipe, tokenizer=tokenizer)
    return tiny.build_tiny_model("builtin:tiny", 0), tokenizer, dataset["train"].select(range(8))


def _args(tmp_path):
    return dict(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=2,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        bf16=False,
    )


def test_sft_trains_on_assistant_answer_only(tmp_path):
    import trl

    model, tok, train = _setup(tmp_path, "sft", traces={"path": "builtin:sample_traces"})
    config = trl.SFTConfig(**_args(tmp_path), assistant_only_loss=True, max_length=1024)
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tok)
    first = trainer.train_dataset[0]
    trained = tok.decode(
        [i for i, lab in zip(first["input_ids"], first["labels"], strict=True) if lab != -100]
    )
    assert trained == train[0]["completion"][0]["content"] + "<|im_end|>"
    assert trainer.train().training_loss > 0


def test_dpo_accepts_pairs(tmp_path):
    import trl

    from llmscisci_cfg.models import tiny

    model, tok, train = _setup(tmp_path, "dpo")
    trainer = trl.DPOTrainer(
        model=model,
        ref_model=tiny.build_tiny_model("builtin:tiny", 0),
        args=trl.DPOConfig(**_args(tmp_path), max_length=1024),
        train_dataset=train,
        processing_class=tok,
    )
    assert trainer.train().training_loss == pytest.approx(0.6931, abs=1e-3)  # log(2) at step one


@pytest.mark.parametrize("labels", [True, False])
def test_grpo_passes_gold_to_rewards(tmp_path, labels):
    import trl

    from tests.data_helpers import LABELS

    model, tok, train = _setup(tmp_path, "grpo", columns={"label": LABELS if labels else None})
    seen = []

    def reward(completions, gold, id, aspect, **kwargs):
        seen.extend(zip(gold, id, aspect, strict=True))
        return [0.0] * len(completions)

    config = trl.GRPOConfig(
        **{**_args(tmp_path), "per_device_train_batch_size": 4},
        num_generations=2,
        max_completion_length=4,
    )
    trl.GRPOTrainer(
        model=model, args=config, train_dataset=train, processing_class=tok, reward_funcs=[reward]
    ).train()
    assert seen and all(isinstance(i, str) and a in ("easy", "difficult") for _, i, a in seen)
    if labels:
        assert all(isinstance(g, list) and len(g) == 5 for g, _, _ in seen)
    else:
        assert all(g is None for g, _, _ in seen)
