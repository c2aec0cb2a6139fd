"""Write the project's synthetic sample dataset (ReScience schema) into the package.

    PYTHONPATH=. python scripts/make_sample_data.py

Every report is composed from per-category phrase banks, so each gold label is true of its
text by construction: one sentence per positive category, and category 5 ("none of the
others") only alone. The text is written for this project; none of it comes from MLRC reports.
Output (deterministic from SEED): llmscisci_cfg/assets/sample/reports.csv and traces.jsonl.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from llmscisci_cfg.task.labels import encode_onehot

SEED = 20240611
N_REPORTS = 120
OUT = Path(__file__).resolve().parents[1] / "llmscisci_cfg" / "assets" / "sample"
COLUMNS = [
    "doi", "title", "easy", "difficult", "y_easy_gpt4", "y_diff_gpt4",
    "reason_for_easiness", "reason_for_difficulty",
    "easy_gpt_response", "easy_llama3_response", "difficult_gpt_response", "difficult_llama3_response",
]  # fmt: skip
EMPTY_EASY = {7: "", 33: "   ", 58: "", 91: ""}  # row index -> empty or whitespace-only section
EMPTY_DIFFICULT = {21: "", 58: "", 104: "\n"}
NO_TRACE = {(12, "easy"), (45, "difficult"), (77, "easy")}  # a few examples without a trace
P_SAME_ANSWER = 0.08  # share of llama3 answers identical to the gpt one (DPO drops these pairs)

FILL = {
    "framework": ["PyTorch", "TensorFlow", "JAX", "Keras"],
    "model": ["ResNet", "BERT", "graph encoder", "vision transformer", "LSTM"],
    "dataset": ["CIFAR-10", "MNIST", "the text corpus", "the graph benchmark", "ImageNet"],
    "component": ["encoder", "decoder", "attention block", "policy network", "discriminator"],
    "detail": [
        "learning rate schedule",
        "warm-up length",
        "random seed",
        "early stopping rule",
        "gradient clipping value",
        "text preprocessing",
    ],  # fmt: skip
    "quantity": ["loss", "reward", "gradient estimate", "regularization term", "similarity score"],
}


@dataclass(frozen=True)
class Phrase:
    """One sentence about exactly one category, and the short cue a reasoning trace cites."""

    text: str
    cue: str


def bank(*pairs: tuple[str, str]) -> list[Phrase]:
    return [Phrase(t, c) for t, c in pairs]


EASY = {
    1: bank(
        ("The authors' code was public on GitHub, so we could run it directly.", "public code"),
        (
            "The official {framework} implementation was available and ran with few changes.",
            "official implementation",
        ),
        (
            "Because the source code was released, rerunning the main experiments was simple.",
            "released source code",
        ),
        (
            "The public repository held the training and evaluation scripts.",
            "public training scripts",
        ),
        ("We could start from the authors' open-source code.", "open-source code"),
        ("The released code ran out of the box.", "released code"),
    ),
    2: bank(
        (
            "The authors shared pretrained {model} checkpoints, which saved weeks of training.",
            "shared checkpoints",
        ),
        (
            "Preprocessed versions of {dataset} were provided with the paper.",
            "provided preprocessed data",
        ),
        (
            "Training logs and saved model weights were available for comparison.",
            "available logs and weights",
        ),
        (
            "The released pretrained weights let us check the reported numbers quickly.",
            "pretrained weights",
        ),
        ("The authors provided the exact data splits they used.", "provided data splits"),
    ),
    3: bank(
        ("The paper was clearly written and easy to follow.", "clear writing"),
        ("The method section explained each idea in plain language.", "plain explanations"),
        (
            "The article was well structured, so the main claims were easy to identify.",
            "well-structured paper",
        ),
        (
            "Clear figures and a readable description helped us understand the approach.",
            "readable description",
        ),
        ("The original paper explained the {model} intuitively.", "intuitive explanation"),
    ),
    4: bank(
        ("All hyperparameters were listed in the appendix.", "listed hyperparameters"),
        ("The required library versions were pinned.", "pinned library versions"),
        (
            "The paper reported the hardware and training time, so we could plan our compute.",
            "reported hardware",
        ),
        ("A Docker image reproduced the authors' environment.", "a ready environment"),
        (
            "The learning rate, batch size and number of epochs were all stated.",
            "stated training settings",
        ),
        ("The experimental setup on {dataset} was described in full.", "described setup"),
    ),
    5: bank(
        ("Nothing in particular made the reproduction easier.", "no concrete factor"),
        ("The report does not say what was easy.", "no concrete factor"),
        ("No specific part of the work stood out as easy.", "no concrete factor"),
        ("We cannot point to one thing that helped.", "no concrete factor"),
    ),
}

DIFFICULT = {  # the research's primary numbering: the task's category order (repro_effort.yaml)
    1: bank(
        ("The paper did not describe the architecture of the {component}.", "missing architecture"),
        (
            "A key step of the training algorithm was left out of the paper.",
            "missing algorithm step",
        ),
        ("The number of layers in the {component} was never specified.", "unspecified layers"),
        ("The order of the update steps in the algorithm was not given.", "missing update order"),
        (
            "How the {component} connects to the rest of the model was not explained.",
            "missing architecture",
        ),
    ),
    2: bank(
        (
            "Small details such as the {detail} were missing, and the results depended on them.",
            "missing small details",
        ),
        ("The weight initialization scheme was not mentioned.", "unmentioned initialization"),
        ("The paper did not report the {detail}.", "unreported detail"),
        ("Minor choices like the {detail} were left unstated.", "unstated minor choices"),
    ),
    3: bank(
        (
            "The code had almost no comments, so it was hard to map it to the paper.",
            "uncommented code",
        ),
        ("The repository's README did not explain how to run the experiments.", "unclear README"),
        (
            "Variable names in the code did not match the notation of the paper.",
            "mismatched code notation",
        ),
        ("The {framework} code was poorly documented.", "poorly documented code"),
    ),
    4: bank(
        ("The {quantity} was given only in words, without an equation.", "no equation"),
        (
            "A key derivation was missing, so we could not verify the {quantity}.",
            "missing derivation",
        ),
        ("The paper lacked the equations needed to compute the {quantity}.", "missing equations"),
        ("The math behind the {quantity} was not written out.", "missing math"),
    ),
    5: bank(
        ("We faced no major difficulties.", "no concrete difficulty"),
        ("Nothing made the reproduction hard.", "no concrete difficulty"),
        ("The reproduction went smoothly without notable problems.", "no concrete difficulty"),
        ("No concrete difficulty is reported.", "no concrete difficulty"),
    ),
}

TITLE_PARTS = (
    [
        "Sparse",
        "Robust",
        "Contrastive",
        "Hierarchical",
        "Efficient",
        "Causal",
        "Adaptive",
        "Federated",
    ],
    [
        "Attention",
        "Graph Networks",
        "Pruning",
        "Distillation",
        "Augmentation",
        "Meta-Learning",
        "Normalizing Flows",
        "Policy Gradients",
        "Label Smoothing",
        "Prompt Tuning",
    ],  # fmt: skip
    [
        "Image Classification",
        "Text Summarization",
        "Link Prediction",
        "Domain Adaptation",
        "Fair Ranking",
        "Continual Learning",
        "Question Answering",
        "Anomaly Detection",
    ],  # fmt: skip
)


def draw_label(rng: random.Random) -> list[int]:
    """A gold one-hot: 1-3 of categories 1-4, or category 5 alone (about 1 in 7)."""
    if rng.random() < 0.14:
        return [0, 0, 0, 0, 1]
    k = rng.choices([1, 2, 3], weights=[5, 4, 1])[0]
    chosen = rng.sample(range(4), k)
    return [int(i in chosen) for i in range(4)] + [0]


def compose(
    rng: random.Random, banks: dict[int, list[Phrase]], label: list[int]
) -> tuple[str, list[str]]:
    """Section text (one sentence per positive category, shuffled) and the trace's cues in category order."""
    picks = {c: rng.choice(banks[c]) for c in range(1, 6) if label[c - 1]}
    fill = {k: rng.choice(v) for k, v in FILL.items()}
    sentences = [p.text.format(**fill) for p in picks.values()]
    rng.shuffle(sentences)
    cues = [f"{picks[c].cue} (category {c})" for c in sorted(picks)]
    return " ".join(sentences), cues


def trace_text(cues: list[str], label: list[int], aspect: str) -> str:
    if label[4]:
        return (
            f"The text names no concrete factor that made it {aspect}, so only category 5 applies."
        )
    return "The text mentions " + "; ".join(cues) + "."


def answer(trace: str, label: list[int]) -> str:
    return f"<think>\n{trace}\n</think>\n<label>\n{encode_onehot(label)}\n</label>"


def codes(label: list[int]) -> str:
    return ", ".join(str(i + 1) for i, v in enumerate(label) if v)


def flawed_answer(rng: random.Random, trace: str, label: list[int]) -> str:
    """The dispreferred answer: usually a wrong label or a broken format, sometimes the gold answer."""
    if rng.random() < P_SAME_ANSWER:
        return answer(trace, label)
    wrong = list(label)
    for i in rng.sample(range(5), rng.choice([1, 2])):
        wrong[i] = 1 - wrong[i]
    kind = rng.choice(
        ["wrong", "wrong", "wrong", "no_think", "short", "codes", "unclosed", "prose", "bad_value"]
    )
    if kind == "wrong":
        return answer("The text is mostly about the experiments.", wrong)
    if kind == "no_think":
        return f"<label>\n{encode_onehot(wrong)}\n</label>"
    if kind == "short":
        return f"<think>\n{trace}\n</think>\n<label>\n{encode_onehot(label[:3])}\n</label>"
    if kind == "codes":
        return f"<think>\n{trace}\n</think>\n<label>\n{codes(label)}\n</label>"
    if kind == "unclosed":
        return f"<think>\n{trace}\n</think>\n<label>\n{encode_onehot(label)}"
    if kind == "prose":
        return "The reproduction effort is described in the section above."
    return f"<think>\n{trace}\n</think>\n<label>\n{encode_onehot(label).replace('0', '2', 1)}\n</label>"


def titles(rng: random.Random, n: int) -> list[str]:
    combos = [(a, b, c) for a in TITLE_PARTS[0] for b in TITLE_PARTS[1] for c in TITLE_PARTS[2]]
    return [f"[Re] {a} {b} for {c}" for a, b, c in rng.sample(combos, n)]


def section(
    rng: random.Random, doi: str, aspect: str, banks, empty: str | None, traces: list, row: int
):
    """The text, gold, codes and both answers of one aspect of one report."""
    if empty is not None:
        return {"text": empty, "gold": "", "codes": "", "gpt": "", "llama3": ""}
    label = draw_label(rng)
    text, cues = compose(rng, banks, label)
    trace = trace_text(cues, label, aspect)
    if (row, aspect) not in NO_TRACE:
        traces.append({"id": doi, "aspect": aspect, "trace": trace})
    gpt = answer(trace, label)
    return {"text": text, "gold": encode_onehot(label), "codes": codes(label), "gpt": gpt,
            "llama3": flawed_answer(rng, trace, label)}  # fmt: skip


def build(
    seed: int = SEED, n: int = N_REPORTS
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """All rows of reports.csv and all trace records, deterministic from ``seed``."""
    rng = random.Random(seed)
    rows, traces = [], []
    for i, title in enumerate(titles(rng, n)):
        doi = f"10.0000/llmscisci.sample.{i + 1:03d}"
        easy = section(rng, doi, "easy", EASY, EMPTY_EASY.get(i), traces, i)
        diff = section(rng, doi, "difficult", DIFFICULT, EMPTY_DIFFICULT.get(i), traces, i)
        rows.append({
            "doi": doi, "title": title, "easy": easy["text"], "difficult": diff["text"],
            "y_easy_gpt4": easy["gold"], "y_diff_gpt4": diff["gold"],
            "reason_for_easiness": easy["codes"], "reason_for_difficulty": diff["codes"],
            "easy_gpt_response": easy["gpt"], "easy_llama3_response": easy["llama3"],
            "difficult_gpt_response": diff["gpt"], "difficult_llama3_response": diff["llama3"],
        })  # fmt: skip
    return rows, traces


def write(out: Path = OUT) -> None:
    rows, traces = build()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "reports.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "traces.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in traces)
    print(f"wrote {len(rows)} reports and {len(traces)} traces to {out}")


if __name__ == "__main__":
    write()
