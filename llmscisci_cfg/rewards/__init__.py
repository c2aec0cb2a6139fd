"""GRPO rewards: the research's six built-ins, user plug-ins, composition and scoring.

- `builtin`: the six reward functions (on the task's answer grammar, `task.answer`).
- `registry`: name → function, plug-in resolution, validate- and plan-time checks.
- `compose`: the recipe's stack as TRL callables, weights and names.
- `score`: calling a stack the way TRL does; totals and per-group spread.
- `testing`: ``llmscisci rewards test``: read completions, score, print.

Everything here is import-light (no torch, no trl).
"""
