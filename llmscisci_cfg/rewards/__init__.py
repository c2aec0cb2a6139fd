"""GRPO rewards: the research's six built-ins, user plug-ins, composition and scoring.

- `builtin`: the reward functions and the label/format definitions they share.
- `registry`: name → function, plug-in resolution, validate- and plan-time checks.
- `compose`: the recipe's stack as TRL callables, weights and names.
- `testing`: ``llmscisci rewards test`` scoring.

Everything here is import-light (no torch, no trl).
"""

from llmscisci_cfg.rewards.compose import RewardFn, RewardStack, build_rewards
from llmscisci_cfg.rewards.registry import BUILTINS, check_callables, check_specs

__all__ = ["BUILTINS", "RewardFn", "RewardStack", "build_rewards", "check_callables", "check_specs"]
