"""Reward throughput: format + stepwise_label + hamming, ours against a notebook-style baseline.

The baseline is written the way the research notebooks scored completions: per completion,
the format regex, a ``split`` for the label, ``ast.literal_eval``, and the gold label looked
up with a pandas DataFrame filter on (id, aspect). Ours is `llmscisci_cfg.rewards` as TRL
calls it, with gold passed in as the dataset's ``gold`` column. Both score the same 10,000
synthetic completions (chat message lists, as TRL passes them for chat datasets) and must
agree on every value.

Run: ``PYTHONPATH=. python bench/bench_rewards.py [N]``.
"""

from __future__ import annotations

import ast
import random
import re
import statistics
import sys
import time
from typing import Any

N_CATEGORIES = 5
REPEATS = 5
WORDS = "code data paper results setup environment clear missing details math notation".split()


# ----------------------------------------------------------------------------- synthetic data


def make_batch(n: int, seed: int = 0) -> dict[str, Any]:
    """``n`` completions for ``n // 4`` prompts (4 generations each), with golds and a DataFrame."""
    import pandas as pd

    rng = random.Random(seed)
    docs = [
        (f"10.5281/zenodo.{i:06d}", rng.choice(["easy", "difficult"]))
        for i in range(max(1, n // 4))
    ]
    golds = {doc: _onehot(rng) for doc in docs}
    ids, aspects, gold, completions = [], [], [], []
    for k in range(n):
        doc = docs[k // 4 % len(docs)]
        ids.append(doc[0])
        aspects.append(doc[1])
        gold.append(golds[doc])
        completions.append([{"role": "assistant", "content": _completion(rng)}])
    frame = pd.DataFrame(
        {
            "id": [d[0] for d in docs],
            "aspect": [d[1] for d in docs],
            "gold": [str(golds[d]) for d in docs],
        }
    )
    return {"completions": completions, "id": ids, "aspect": aspects, "gold": gold, "frame": frame}


def _onehot(rng: random.Random) -> list[int]:
    label = [rng.randint(0, 1) for _ in range(N_CATEGORIES - 1)]
    return label + [0] if any(label) else label + [1]


def _completion(rng: random.Random) -> str:
    think = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120)))
    label = ", ".join(str(v) for v in _onehot(rng))
    kind = rng.random()
    if kind < 0.55:  # well formed
        return f"<think>\n{think}\n</think>\n<label>\n[{label}]\n</label>"
    if kind < 0.65:  # wrong length
        return f"<think>{think}</think>\n<label>[{label}, 0]</label>"
    if kind < 0.72:  # floats
        return f"<think>{think}</think><label>[{label.replace('1', '1.0')}]</label>"
    if kind < 0.80:  # no brackets
        return f"<think>{think}</think><label>{label}</label>"
    if kind < 0.88:  # missing closing tag
        return f"<think>{think}</think><label>[{label}]"
    if kind < 0.95:  # no think block
        return f"{think}\n<label>[{label}]</label>"
    return think  # free text


# ----------------------------------------------------------------------------- notebook baseline

FORMAT_PATTERN = r".*<think>.*?</think>\s*<label>.*?</label>.*"


def nb_format(completions, **kwargs):
    rewards = []
    for completion in completions:
        content = completion[0]["content"]
        rewards.append(1.0 if re.match(FORMAT_PATTERN, content, re.DOTALL) else 0.0)
    return rewards


def _nb_valid(label):
    try:
        value = ast.literal_eval(label)
    except Exception:
        return None
    if (
        type(value) is list
        and len(value) == N_CATEGORIES
        and all(type(v) is int and v in (0, 1) for v in value)
    ):
        return value
    return None


def nb_stepwise(completions, **kwargs):
    rewards = []
    for completion in completions:
        content = completion[0]["content"]
        if not re.match(FORMAT_PATTERN, content, re.DOTALL):
            rewards.append(0.0)
            continue
        label = content.split("<label>")[-1].split("</label>")[0].strip()
        score = 0.0
        if label:
            score += 0.125
        cleaned = re.sub(r"[\[\],\s]", "", label)
        if cleaned and all(ch in "01" for ch in cleaned):
            score += 0.125
        if label.startswith("[") and label.endswith("]"):
            score += 0.125
        if _nb_valid(label) is not None:
            score += 0.625
        rewards.append(score)
    return rewards


def nb_hamming(completions, id, aspect, frame, **kwargs):
    rewards = []
    for completion, doc, asp in zip(completions, id, aspect, strict=True):
        content = completion[0]["content"]
        row = frame[(frame["id"] == doc) & (frame["aspect"] == asp)]
        gold = ast.literal_eval(row["gold"].values[0])
        after = content.split("<label>")
        if len(after) < 2 or "</label>" not in after[-1]:
            rewards.append(0.0)
            continue
        pred = _nb_valid(after[-1].split("</label>")[0].strip())
        if pred is None:
            rewards.append(0.0)
            continue
        loss = sum(g != p for g, p in zip(gold, pred, strict=True)) / len(gold)
        rewards.append(1.0 - loss)
    return rewards


# ----------------------------------------------------------------------------- timing


def _timed(fn) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(n: int = 10000, repeats: int = REPEATS) -> dict[str, Any]:
    """Time both implementations on ``n`` completions, interleaved; medians of ``repeats`` runs."""
    from llmscisci_cfg.recipe.schema import RewardSpec
    from llmscisci_cfg.rewards.compose import build_rewards

    batch = make_batch(n)
    specs = [RewardSpec(name=name) for name in ("format", "stepwise_label", "hamming")]
    from llmscisci_cfg.task.kinds import MultiLabel

    stack = build_rewards(specs, __import__("pathlib").Path("."), MultiLabel.plain(N_CATEGORIES))
    kwargs = {k: batch[k] for k in ("id", "aspect", "gold")}
    comps = batch["completions"]

    def ours():
        return [fn(completions=comps, prompts=None, **kwargs) for fn in stack.funcs]

    def baseline():
        return [
            nb_format(comps),
            nb_stepwise(comps),
            nb_hamming(comps, batch["id"], batch["aspect"], batch["frame"]),
        ]

    ours_times, base_times = [], []
    for _ in range(repeats):
        t, ours_out = _timed(ours)
        ours_times.append(t)
        t, base_out = _timed(baseline)
        base_times.append(t)
    ours_s, base_s = statistics.median(ours_times), statistics.median(base_times)
    return {
        "n": n,
        "rewards": stack.names,
        "ours_seconds": ours_s,
        "baseline_seconds": base_s,
        "ours_completions_per_s": n / ours_s,
        "baseline_completions_per_s": n / base_s,
        "speedup": base_s / ours_s,
        "agree": ours_out == base_out,
        "python": sys.version.split()[0],
    }


def figures(n: int = 10000) -> dict[str, Any]:
    """The flat keys `python -m bench` records."""
    r = run(n)
    if not r["agree"]:
        raise AssertionError("the rewards disagree with the notebook-style baseline")
    return {
        "rewards_per_second": round(r["ours_completions_per_s"]),
        "rewards_speedup_vs_naive": round(r["speedup"], 1),
        "rewards_naive_per_second": round(r["baseline_completions_per_s"]),
    }


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 10000
    r = run(n)
    print(f"{r['n']} completions, rewards: {' + '.join(r['rewards'])} (python {r['python']})")
    print(
        f"  ours      {r['ours_seconds']:.4f} s  {r['ours_completions_per_s']:>12,.0f} completions/s"
    )
    print(
        f"  baseline  {r['baseline_seconds']:.4f} s  {r['baseline_completions_per_s']:>12,.0f} completions/s"
    )
    print(f"  speedup   {r['speedup']:.1f}x   results agree: {r['agree']}")
    goal = r["ours_completions_per_s"] >= 100_000 and r["speedup"] >= 20
    print(f"  goal (>= 100,000/s and >= 20x): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main(sys.argv)
