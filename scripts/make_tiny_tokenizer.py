"""Train the built-in tiny model's tokenizer and write it into the package.

    PYTHONPATH=. python scripts/make_tiny_tokenizer.py

A byte-level BPE trained in-process with `tokenizers` on the sample dataset, the task's
rendered prompts and the chat templates' fixed text. It knows the special tokens of every
shipped template family, so golden tests can tokenize each, and makes the answer tags
(<think>, </think>, <label>, </label>, <text>, </text>) single tokens. Deterministic: the
same inputs give byte-identical files. Run scripts/make_sample_data.py first.
Output: llmscisci_cfg/assets/tiny_tokenizer/ (tokenizer.json, tokenizer_config.json,
chat_template.jinja = templates/tiny.jinja).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jinja2
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "llmscisci_cfg" / "assets" / "tiny_tokenizer"
SAMPLE = REPO / "llmscisci_cfg" / "assets" / "sample"
TASKS = REPO / "llmscisci_cfg" / "assets" / "tasks"
TEMPLATE = REPO / "templates" / "tiny.jinja"

VOCAB_SIZE = 3072
PROMPT_WEIGHT = 40  # prompt text recurs in every example; weight it so its words become tokens
SPECIAL = [
    "<pad>", "<eos>", "<bos>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",  # llama3
    "<start_of_turn>", "<end_of_turn>",  # gemma3
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",  # chatml / qwen2.5 and the tiny template
]  # fmt: skip
TAGS = ["<think>", "</think>", "<label>", "</label>", "<text>", "</text>"]  # plain added tokens
# Qwen2's pre-tokenizer (Llama 3's, with single digits) and NFC normalizer. Runs of newlines stay
# one piece, so "\n\n" before content tokenizes the same with or without the content. Matching
# Qwen2 exactly matters: transformers reloads a saved builtin:tiny-qwen directory as
# Qwen2Tokenizer, which rebuilds the pipeline this way (and adds <|endoftext|> if it is missing).
SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Common words of ML papers and reproducibility reports, so real report text (e.g. the MLRC
# CSV in `preprocess`) does not fall apart into single bytes.
GENERAL_WORDS = """
the a an and or but not no of in on at to for from by with without as is are was were be been
being has have had do does did can could may might must should would will this that these those
it its we our us they their them he she his her which who whom whose what when where why how than
then there here also only both each every all any some most more less many much few other such
same different new old first second third last next previous main major minor key large small
high low long short full partial clear unclear easy difficult hard simple complex possible
paper papers author authors original reproduction reproducibility reproduce reproduced reproducing
replication replicate study report reports section results result claim claims finding findings
experiment experiments experimental setup environment implementation implementations implemented
code codebase repository repositories github script scripts library libraries package version
versions dependency dependencies documentation documented comments readme instructions notebook
model models network networks architecture layer layers encoder decoder attention transformer
convolutional recurrent embedding embeddings parameter parameters hyperparameter hyperparameters
weight weights checkpoint checkpoints pretrained training trained train test testing validation
evaluation evaluate evaluated metric metrics accuracy loss losses score scores performance baseline
baselines benchmark benchmarks dataset datasets data sample samples split splits batch batches epoch
epochs iteration iterations step steps learning rate rates optimizer optimization gradient gradients
descent stochastic regularization dropout normalization initialization seed seeds random variance
mean average standard deviation table tables figure figures appendix supplementary material
equation equations derivation proof theorem notation math mathematical formula function functions
objective algorithm algorithms method methods approach technique procedure pipeline framework
compute computation computational resources gpu gpus cpu memory time hours days budget cost
hardware software python pytorch tensorflow jax docker container image images text texts language
graph graphs node nodes edge edges classification regression generation detection segmentation
translation reinforcement policy reward agent environment state action value values task tasks
domain domains adaptation transfer fine tuning tuned pruning sparse sparsity robust robustness
fairness bias causal contrastive generative adversarial diffusion variational latent distribution
missing detail details information specified unspecified described description explained explain
provided available released public open source shared obtained reported report stated mentioned
however therefore although because since while due despite instead thus overall finally further
able unable time consuming took required needed necessary sufficient insufficient significant
""".split()
TEMPLATE_TEXT = [
    "system", "user", "assistant", "model",
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n",
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
]  # fmt: skip


def sample_texts() -> list[str]:
    with open(SAMPLE / "reports.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [value for row in rows for value in row.values() if value.strip()]
    with open(SAMPLE / "traces.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["trace"] for line in f if line.strip()]
    return texts


def prompt_texts() -> list[str]:
    """The labelling task's system and user prompts, rendered for each aspect (text left empty).

    Only ``repro_effort.yaml``: the tokenizer (and every tiny-model figure) stays fixed when
    other task files are added."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    out = []
    for path in [TASKS / "repro_effort.yaml"]:
        task = yaml.safe_load(path.read_text(encoding="utf-8"))
        for aspect in task.get("aspects", {}).values():
            cats = aspect.get("categories", [])
            values = dict(
                aspect, categories=cats, n=len(cats), text="", example_label="[1, 0, 1, 0, 0]"
            )
            for key in ("system_prompt", "user_prompt"):
                if task.get(key):
                    out.append(env.from_string(task[key]).render(**values))
    return out


def train():
    """The trained `tokenizers.Tokenizer` (special tokens first, then the answer tags)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(
        vocab_size=VOCAB_SIZE - len(TAGS),
        min_frequency=1,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    general = [" ".join(GENERAL_WORDS), " ".join(w.capitalize() for w in GENERAL_WORDS)]
    corpus = sample_texts() + general + (prompt_texts() + TEMPLATE_TEXT) * PROMPT_WEIGHT
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    return tok


def write(out: Path = OUT) -> None:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=train(),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        padding_side="left",
        model_max_length=2048,
    )
    hf.chat_template = TEMPLATE.read_text(encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    hf.save_pretrained(out)
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    print(f"wrote a tokenizer of {len(hf)} tokens to {out}: {sizes}")


if __name__ == "__main__":
    write()
