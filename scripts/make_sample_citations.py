"""Write the project's synthetic citation contexts (SciCite / ACL-ARC schema) into the package.

    PYTHONPATH=. python scripts/make_sample_citations.py

Each context is one sentence built from a frame of one citation function (ACL-ARC's six:
BACKGROUND, USES, COMPARES_CONTRASTS, MOTIVATION, EXTENDS, FUTURE) with the cited work marked
``@@CITATION@@``, sometimes with a neutral sentence before or after it (which may cite other,
invented, works). Both gold labels are true of the text by construction: ``function_label`` is
the frame's function and ``intent_label`` its SciCite intent (background, motivation and
future work are background information; uses and extends are method; every comparison frame
compares results, so it is results comparison). The text is written for this project; none of
it comes from SciCite or ACL-ARC.

Output (deterministic from SEED): llmscisci_cfg/assets/sample/citations.csv, the table behind
``builtin:sample_citations``.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20250317
N_CONTEXTS = 120
OUT = Path(__file__).resolve().parents[1] / "llmscisci_cfg" / "assets" / "sample"
COLUMNS = ["unique_id", "citation_context", "intent_label", "function_label"]
#: ACL-ARC function -> SciCite intent (the gold strings of each CSV).
INTENT = {
    "BACKGROUND": "background information",
    "MOTIVATION": "background information",
    "FUTURE": "background information",
    "USES": "method",
    "EXTENDS": "method",
    "COMPARES_CONTRASTS": "results comparison",
}
#: How often each function is drawn: imbalanced, as citation functions are.
WEIGHTS = {
    "BACKGROUND": 40,
    "USES": 20,
    "COMPARES_CONTRASTS": 16,
    "MOTIVATION": 8,
    "EXTENDS": 8,
    "FUTURE": 8,
}
EMPTY = {17: "", 64: "  "}  # row index -> an empty or blank context (the data stage drops these)

FILL = {
    "task": ["dependency parsing", "named entity recognition", "machine translation",
             "sentiment analysis", "question answering", "protein folding prediction",
             "image segmentation", "topic modelling"],
    "model": ["tagger", "parser", "sequence model", "graph network", "classifier", "encoder"],
    "resource": ["treebank", "annotated corpus", "lexicon", "benchmark", "embedding table"],
    "tool": ["tokenizer", "part-of-speech tagger", "alignment toolkit", "feature extractor"],
    "component": ["attention layer", "character encoder", "reranking step", "copy mechanism"],
    "score": ["81.2", "77.5", "90.4", "68.9", "85.0"],
    "other": ["Okafor , 2014", "Lindqvist and Mora , 2017", "Tanaka et al. , 2011",
              "Berrada , 2019", "Novak and Ilunga , 2008"],
}  # fmt: skip

FRAMES = {
    "BACKGROUND": [
        "{task} has received much attention in recent years ( @@CITATION@@ ; {other} ) .",
        "Earlier studies found that {task} benefits from larger {resource}s @@CITATION@@ .",
        "A {model} assigns a label to every token of the input ( @@CITATION@@ ) .",
        "Most approaches to {task} rely on a {resource} of some kind ( {other} ; @@CITATION@@ ) .",
        "The problem of {task} was first formulated by @@CITATION@@ .",
        "Statistical methods dominated {task} for two decades @@CITATION@@ .",
    ],
    "MOTIVATION": [
        "As @@CITATION@@ observe , {task} remains hard for low-resource languages , which "
        "motivates the present work .",
        "Existing systems for {task} ignore long-range context ( @@CITATION@@ ) , a gap we "
        "address here .",
        "The need for a better {resource} for {task} was pointed out by @@CITATION@@ .",
    ],
    "FUTURE": [
        "In future work we plan to apply the {model} of @@CITATION@@ to {task} .",
        "Combining our approach with the {component} of @@CITATION@@ is a promising direction "
        "for future work .",
        "We leave the use of the {resource} of @@CITATION@@ to future research .",
    ],
    "USES": [
        "We use the {tool} of @@CITATION@@ to preprocess all documents .",
        "Following @@CITATION@@ , we train the {model} with the same learning rate schedule .",
        "All sentences were tagged with the {tool} described in @@CITATION@@ .",
        "Our experiments are run on the {resource} released by @@CITATION@@ .",
        "Features are computed with the {tool} from @@CITATION@@ .",
    ],
    "EXTENDS": [
        "We extend the {model} of @@CITATION@@ with a {component} .",
        "Our model builds on @@CITATION@@ but replaces its decoder with a {component} .",
        "We enlarge the {resource} of @@CITATION@@ with two new annotation layers .",
    ],
    "COMPARES_CONTRASTS": [
        "Our {model} reaches {score} F1 , above the score reported by @@CITATION@@ .",
        "Unlike the results of @@CITATION@@ , we find no gain from a larger {resource} .",
        "These findings agree with those of @@CITATION@@ on {task} .",
        "Compared with @@CITATION@@ , our system lowers the error rate on {task} by a third .",
    ],
}
NEUTRAL = [
    "Table 2 lists the statistics of each split .",
    "The remaining settings are given in the appendix .",
    "{task} is evaluated with the standard metric ( {other} ) .",
    "We report the mean of five runs .",
]


def context(rng: random.Random, function: str) -> str:
    """One citation context of ``function``: its frame, sometimes between neutral sentences."""
    fill = {k: rng.choice(v) for k, v in FILL.items()}
    frame = rng.choice(FRAMES[function]).format(**fill)
    frame = frame[0].upper() + frame[1:]
    parts = [frame]
    if rng.random() < 0.3:
        parts.insert(0, rng.choice(NEUTRAL).format(**fill))
    if rng.random() < 0.2:
        parts.append(rng.choice(NEUTRAL).format(**fill))
    return " ".join(p[0].upper() + p[1:] for p in parts)


def build(seed: int = SEED, n: int = N_CONTEXTS) -> list[dict[str, str]]:
    """Every row of citations.csv, deterministic from ``seed``; every function occurs."""
    rng = random.Random(seed)
    names = list(WEIGHTS)
    functions = names + rng.choices(names, weights=list(WEIGHTS.values()), k=n - len(names))
    rng.shuffle(functions)
    rows = []
    for i, function in enumerate(functions):
        text = EMPTY.get(i, context(rng, function))
        labelled = bool(text.strip())
        rows.append(
            {
                "unique_id": f"SAMPLE-P{i // 3 + 1:03d}_{i % 3 + 1}",
                "citation_context": text,
                "intent_label": INTENT[function] if labelled else "",
                "function_label": function if labelled else "",
            }
        )
    return rows


def write(out: Path = OUT) -> None:
    rows = build()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "citations.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} citation contexts to {out}")


if __name__ == "__main__":
    write()
