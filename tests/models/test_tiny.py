"""The built-in tiny models, the shipped tokenizer and the shipped sample dataset."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models import tiny
from llmscisci_cfg.resources import root
from llmscisci_cfg.task.labels import decode_label, parse_onehot

REPO = Path(__file__).resolve().parents[2]
SAMPLE = root("assets") / "sample"
COLUMNS = [
    "doi", "title", "easy", "difficult", "y_easy_gpt4", "y_diff_gpt4", "reason_for_easiness",
    "reason_for_difficulty", "easy_gpt_response", "easy_llama3_response", "difficult_gpt_response",
    "difficult_llama3_response",
]  # fmt: skip
ASPECTS = {  # aspect -> (text, gold, codes, chosen, rejected)
    "easy": ("easy", "y_easy_gpt4", "reason_for_easiness", "easy_gpt_response", "easy_llama3_response"),
    "difficult": (
        "difficult", "y_diff_gpt4", "reason_for_difficulty", "difficult_gpt_response", "difficult_llama3_response",
    ),
}  # fmt: skip
ANSWER = re.compile(r"<think>\n(?P<trace>.+)\n</think>\n<label>\n(?P<label>\[.*\])\n</label>", re.S)
ARCH = {"builtin:tiny": "LlamaForCausalLM", "builtin:tiny-qwen": "Qwen2ForCausalLM",
        "builtin:tiny-gemma": "Gemma3ForCausalLM"}  # fmt: skip


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(SAMPLE / "reports.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def traces() -> list[dict[str, str]]:
    with open(SAMPLE / "traces.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------- models


def test_names():
    assert tiny.builtin_names() == list(ARCH)
    assert tiny.is_builtin("builtin:tiny") and not tiny.is_builtin("google/gemma-3-1b-it")
    with pytest.raises(
        UserError, match=r"unknown built-in model 'builtin:tiny-xl'; available: builtin:tiny, "
    ):
        tiny.tiny_config("builtin:tiny-xl")


@pytest.mark.parametrize("name", list(ARCH))
def test_builds_offline_and_runs_forward(name):
    import torch

    model = tiny.build_tiny_model(name, seed=0)
    tokenizer = tiny.load_tiny_tokenizer()
    assert type(model).__name__ == ARCH[name]
    assert model.config.vocab_size == len(tokenizer)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (128, 2)
    ids = tokenizer("<think>\nThe code was public.\n</think>", return_tensors="pt")["input_ids"]
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, ids.shape[1], len(tokenizer))
    # random init: the loss is near log(vocab), far from a trained model's
    assert abs(out.loss.item() - torch.log(torch.tensor(float(len(tokenizer)))).item()) < 1.0


@pytest.mark.parametrize("name", list(ARCH))
def test_same_seed_same_weights(name):
    import torch

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tiny.build_tiny_model(name, seed=7).state_dict()
    assert torch.equal(torch.rand(1), before), "building does not move the caller's RNG"
    b = tiny.build_tiny_model(name, seed=7).state_dict()
    c = tiny.build_tiny_model(name, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_dtype_and_stop_tokens():
    import torch

    model = tiny.build_tiny_model("builtin:tiny", seed=0, dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    tokenizer = tiny.load_tiny_tokenizer()
    stops = {tokenizer.convert_ids_to_tokens(i) for i in model.generation_config.eos_token_id}
    assert stops == {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<eos>"}
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    with pytest.raises(UserError, match="model.dtype: unknown dtype 'float99'"):
        tiny.build_tiny_model("builtin:tiny", dtype="float99")


@pytest.mark.parametrize("name", list(ARCH))
def test_save_tiny_is_a_local_model_dir(tmp_path, name):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tiny.save_tiny(name, tmp_path / "m", seed=3)
    model = AutoModelForCausalLM.from_pretrained(out)
    expected = tiny.build_tiny_model(name, seed=3).state_dict()
    assert type(model).__name__ == ARCH[name]
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    # AutoTokenizer picks the class by model type (Qwen2Tokenizer for tiny-qwen, which rebuilds
    # the pipeline); the reloaded tokenizer must still be the shipped one, token for token
    shipped, reloaded = tiny.load_tiny_tokenizer(), AutoTokenizer.from_pretrained(out)
    text = "In 2021 we ran 1234567 steps, naïve café\n\n<think>\nx\n</think><|im_end|>\n"
    assert reloaded(text)["input_ids"] == shipped(text)["input_ids"]
    assert len(reloaded) == len(shipped) == model.config.vocab_size
    assert reloaded.chat_template == shipped.chat_template
    assert (reloaded.eos_token, reloaded.pad_token) == ("<|im_end|>", "<pad>")


# ----------------------------------------------------------------------------- tokenizer


def test_tokenizer_special_and_single_tokens():
    tokenizer = tiny.load_tiny_tokenizer()
    assert 2000 <= len(tokenizer) <= 4000
    singles = [
        "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<bos>", "<eos>",
        "<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<|im_end|>", "<pad>",
        "<think>", "</think>", "<label>", "</label>",
    ]  # fmt: skip
    for token in singles:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [
            tokenizer.convert_tokens_to_ids(token)
        ]
    # answer tags survive skip_special_tokens (TRL decodes completions that way); turn tokens do not
    ids = tokenizer("<think>\nx\n</think><|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>"


def test_tokenizer_round_trips_any_text():
    tokenizer = tiny.load_tiny_tokenizer()
    text = "Reproduktion: naïve 95% — 3× faster, 測試\n\n\tend"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_shipped_assets_are_small():
    files = [
        p for d in (root("assets") / "tiny_tokenizer", SAMPLE) for p in d.iterdir() if p.is_file()
    ]
    assert sum(p.stat().st_size for p in files) < 1_000_000


def test_tokenizer_script_reproduces_the_shipped_vocab():
    shipped = json.loads(
        (root("assets") / "tiny_tokenizer" / "tokenizer.json").read_text(encoding="utf-8")
    )
    fresh = json.loads(load_script("make_tiny_tokenizer").train().to_str())
    assert fresh["model"]["vocab"] == shipped["model"]["vocab"]
    assert fresh["model"]["merges"] == shipped["model"]["merges"]
    assert fresh["added_tokens"] == shipped["added_tokens"]


# ----------------------------------------------------------------------------- sample dataset


def test_sample_is_the_scripts_output(tmp_path):
    load_script("make_sample_data").write(tmp_path)
    for name in ("reports.csv", "traces.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes()


def test_sample_schema(rows):
    assert 100 <= len(rows) <= 130
    assert list(rows[0]) == COLUMNS
    assert len({r["doi"] for r in rows}) == len(rows)


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_sample_labels(rows, aspect):
    text, gold, codes, chosen, _ = ASPECTS[aspect]
    labelled = [r for r in rows if r[text].strip()]
    empty = [r for r in rows if not r[text].strip()]
    assert len(empty) >= 3, "some empty sections exercise the drop counts"
    assert all(r[gold] == r[codes] == r[chosen] == "" for r in empty)
    counts = [0] * 5
    for r in labelled:
        label = parse_onehot(r[gold], 5)
        assert label is not None, r["doi"]
        assert sum(label) >= 1
        assert label[4] == 0 or sum(label) == 1, f"{r['doi']}: category 5 is exclusive"
        assert decode_label(r[codes], "codes", 5) == label
        counts = [c + v for c, v in zip(counts, label, strict=True)]
    assert min(counts) >= 10, f"every category is well represented: {counts}"


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_sample_dpo_pairs(rows, aspect):
    text, gold, _, chosen, rejected = ASPECTS[aspect]
    labelled = [r for r in rows if r[text].strip()]
    for r in labelled:
        match = ANSWER.fullmatch(r[chosen])
        assert match and parse_onehot(match["label"], 5) == parse_onehot(r[gold], 5), r["doi"]
    same = sum(r[chosen] == r[rejected] for r in labelled)
    assert 1 <= same <= len(labelled) // 5, "a few identical pairs for the DPO builder to drop"
    bad_format = sum(not ANSWER.fullmatch(r[rejected]) for r in labelled)
    assert bad_format >= 10, "many rejected answers are malformed"


def test_sample_traces(rows, traces):
    by_key = {(t["id"], t["aspect"]): t["trace"] for t in traces}
    assert len(by_key) == len(traces) and all(set(t) == {"id", "aspect", "trace"} for t in traces)
    examples = [(r, a) for r in rows for a in ASPECTS if r[ASPECTS[a][0]].strip()]
    missing = [(r["doi"], a) for r, a in examples if (r["doi"], a) not in by_key]
    assert 1 <= len(missing) <= 5, "a few examples lack a trace (traces.missing: drop/empty)"
    for r, a in examples:
        if (r["doi"], a) in by_key:
            assert ANSWER.fullmatch(r[ASPECTS[a][3]])["trace"] == by_key[(r["doi"], a)]


def test_sample_texts_are_short(rows):
    sentences = [
        len(re.findall(r"[.!?](?:\s|$)", r[a])) for r in rows for a in ASPECTS if r[a].strip()
    ]
    assert max(sentences) <= 3 and min(sentences) >= 1


def test_sample_copies_no_mlrc_text(rows, mlrc_csv):
    real = mlrc_csv.read_text(encoding="utf-8")
    sentences = {
        s for r in rows for a in ASPECTS for s in re.split(r"(?<=\.) ", r[a]) if len(s) > 30
    }
    assert not [s for s in sentences if s in real]
