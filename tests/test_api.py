"""The public Python API: small, light, and the same behaviour as the CLI."""

from __future__ import annotations

import llmscisci_cfg
import llmscisci_cfg.data.preprocess  # noqa: F401
import llmscisci_cfg.train.plan  # noqa: F401  (importing submodules must not replace the API)


def test_api_loads_and_plans_without_shadowing_submodules():
    recipe = llmscisci_cfg.load_recipe("builtin:quickstart/sft_tiny", ["train.max_steps=5"])
    assert recipe.method.name == "sft" and recipe.train.max_steps == 5
    plan = llmscisci_cfg.make_plan("builtin:quickstart/sft_tiny", ["train.max_steps=5"])
    assert plan.compiled.config_kwargs["max_steps"] == 5
    assert callable(llmscisci_cfg.make_plan) and callable(llmscisci_cfg.build_dataset)
