"""Fixed evaluation sets: the split does not move with the tokenizer or the length limit; an
over-long test example is truncated or listed as excluded; the test-set sha256 names it."""

from __future__ import annotations

import json

import pytest

from llmscisci_cfg.data.lengthfilter import token_measure
from llmscisci_cfg.data.truncate import MARKER
from tests.data_helpers import LABELS, build_dataset, make_job, reports, write_csv


def _pairs(split) -> list[tuple[str, str]]:
    return [(r["id"], r["aspect"]) for r in split]


def _prompt_tokens(dataset, tokenizer, split: str = "test") -> list[int]:
    return token_measure(tokenizer)(dataset[split]["prompt"], True)


@pytest.mark.parametrize("template", ["tiny", "llama3"])
def test_split_stays_put_under_any_tokenizer_and_limit(tmp_path, template):
    """Under either chat template (other token counts) and a limit that some test prompts
    exceed: truncate keeps the very test set; drop lists what it excludes and moves nothing."""
    write_csv(tmp_path / "r.csv", reports(20))
    columns = {"label": LABELS}
    base, base_report = build_dataset(
        make_job(tmp_path, "r.csv", length_filter=None, columns=columns)
    )

    def build(length_filter):
        job = make_job(
            tmp_path,
            "r.csv",
            columns=columns,
            length_filter=length_filter,
            overrides=(f"template.name={template}",),
        )
        tokenizer = job.tokenizer()
        return (*build_dataset(job, tokenizer=tokenizer), tokenizer)

    unfiltered, _, tokenizer = build(None)
    assert _pairs(unfiltered["test"]) == _pairs(base["test"])
    limit = max(_prompt_tokens(unfiltered, tokenizer)) - 1  # the longest test prompt is over

    spec = {"percentile": None, "max_prompt_tokens": limit}
    truncated, t_report, _ = build(spec | {"strategy": "truncate"})
    assert _pairs(truncated["test"]) == _pairs(base["test"])  # nothing lost, nothing moved
    assert t_report.test_set_sha256 == base_report.test_set_sha256
    assert not t_report.test_excluded and "prompt_too_long" not in t_report.dropped
    assert sum(c.get("truncated", 0) for c in t_report.length["splits"]["test"].values()) >= 1
    assert max(_prompt_tokens(truncated, tokenizer)) <= limit
    assert any(MARKER.strip() in p[1]["content"] for p in truncated["test"]["prompt"])

    dropped, d_report, _ = build(spec)  # strategy drop, the default
    excluded = [tuple(x[:2]) for x in d_report.test_excluded]
    assert excluded and {x[2] for x in d_report.test_excluded} == {"prompt_too_long"}
    assert sorted(_pairs(dropped["test"]) + excluded) == sorted(_pairs(base["test"]))
    assert not {doc for doc, _ in excluded} & set(dropped["train"]["id"])  # never moved to train
    assert d_report.test_set_sha256 != base_report.test_set_sha256  # fewer examples: another set
    assert d_report.summary()["test_excluded"] == d_report.test_excluded


def test_split_is_decided_by_the_documents_not_the_aspects(tmp_path):
    """Building one aspect or both, with or without labels, holds out the same documents."""
    rows = reports(20)
    for r in rows[::3]:
        r["easy"] = ""  # 7 documents have no 'easy' section
    write_csv(tmp_path / "r.csv", rows)
    both, _ = build_dataset(make_job(tmp_path, "r.csv", length_filter=None))
    easy, _ = build_dataset(
        make_job(tmp_path, "r.csv", length_filter=None, aspects=["easy"], columns={"label": LABELS})
    )
    held_out = set(both["test"]["id"])
    assert len(held_out) == 4 and set(easy["test"]["aspect"]) == {"easy"}
    assert set(easy["test"]["id"]) == held_out - {r["doi"] for r in rows[::3]}
    assert not held_out & set(easy["train"]["id"])


def test_sha_covers_ids_gold_and_text(tmp_path):
    rows = reports(10)
    write_csv(tmp_path / "r.csv", rows)
    job = make_job(tmp_path, "r.csv", length_filter=None, columns={"label": LABELS})
    dataset, first = build_dataset(job)
    again, second = build_dataset(job, use_cache=False)
    assert first.test_set_sha256 == second.test_set_sha256  # deterministic
    test_doc = dataset["test"][0]["id"]
    for column, value in (("y_easy_gpt4", "[0, 1, 0, 0, 0]"), ("easy", "Another text.")):
        changed = [dict(r) for r in rows]
        next(r for r in changed if r["doi"] == test_doc)[column] = value
        write_csv(tmp_path / "r.csv", changed)
        job = make_job(tmp_path, "r.csv", length_filter=None, columns={"label": LABELS})
        _, other = build_dataset(job)
        assert other.test_set_sha256 != first.test_set_sha256, column
    other_seed = make_job(tmp_path, "r.csv", length_filter=None, overrides=("train.seed=1",))
    write_csv(tmp_path / "r.csv", rows)
    assert build_dataset(other_seed)[1].test_set_sha256 != first.test_set_sha256


def test_quickstart_sft_and_grpo_evaluate_the_same_test_set(cli, tmp_path):
    """The quickstart's two evals (SFT, then GRPO) are comparable: one split seed, one set."""
    summaries = {}
    for name in ("sft_tiny", "grpo_tiny"):
        # GRPO starts from SFT's final/; the tokenizer does not decide the split, builtin:tiny does
        args = ["--set", "model.name_or_path=builtin:tiny"] if name == "grpo_tiny" else []
        result = cli("preprocess", f"builtin:quickstart/{name}", *args, "--json")
        assert result.exit_code == 0, result.output
        summaries[name] = json.loads(result.stdout)
    sft, grpo = summaries["sft_tiny"], summaries["grpo_tiny"]
    assert len(sft["test_set_sha256"]) == 64
    assert sft["test_set_sha256"] == grpo["test_set_sha256"]
    assert sft["splits"]["test"] == grpo["splits"]["test"] == 48


def test_mlrc_difficult_sections_truncated_not_dropped(tmp_path, mlrc_csv):
    """The issue's case: a 2,048-token limit dropped all 57 run-on 'difficult' sections."""
    limit = 2048
    spec = {"percentile": None, "max_prompt_tokens": limit, "strategy": "truncate"}
    job = make_job(tmp_path, str(mlrc_csv), length_filter=spec)
    tokenizer = job.tokenizer()
    dataset, report = build_dataset(job, tokenizer=tokenizer)
    assert "prompt_too_long" not in report.dropped and report.test_excluded == []
    difficult = [a for split in dataset.values() for a in split["aspect"] if a == "difficult"]
    assert len(difficult) == 57
    truncated = sum(
        report.length["splits"][s]["difficult"].get("truncated", 0) for s in ("train", "test")
    )
    assert truncated >= 40  # most raw sections are far over the limit
    for split in dataset:
        assert max(_prompt_tokens(dataset, tokenizer, split)) <= limit
