"""``data.clean`` in a recipe: off unless declared, one reader for training, eval and predict,
in the cache key, counted per aspect, previewed before/after by ``preprocess``."""

from __future__ import annotations

import json

from llmscisci_cfg.data.clean import options_of
from llmscisci_cfg.data.preprocess import cache_key
from tests.data_helpers import LABELS, build_dataset, make_job, reports, write_csv

FOOTER = (
    "Copyright © 2022 A. Author et al., released under a Creative Commons Attribution 4.0 "
    "International license."
)
#: A scraped "easy" cell: a broken word, a curly quote, a footer, then the next section.
SCRAPED = f"The code was pre‐ trained on “ImageNet”.\n{FOOTER}\nReferences\n[1] A. Author."
CLEANED = 'The code was pretrained on "ImageNet".'
NO_FILTER = {"length_filter": None, "columns": {"label": LABELS}}


def _scraped_csv(tmp_path, n: int = 6) -> None:
    rows = reports(n)
    for r in rows:
        r["easy"] = SCRAPED
    write_csv(tmp_path / "r.csv", rows)


def _user_texts(dataset, aspect: str = "easy") -> list[str]:
    return [
        row["prompt"][1]["content"]
        for split in dataset.values()
        for row in split
        if row["aspect"] == aspect
    ]


def test_off_unless_declared(tmp_path):
    _scraped_csv(tmp_path)
    job = make_job(tmp_path, "r.csv", **NO_FILTER)
    assert job.recipe.data.clean is None and options_of(job.recipe.data.clean) is None
    dataset, report = build_dataset(job)
    assert all(SCRAPED in text for text in _user_texts(dataset))  # as written: the research's
    assert "cleaning" not in report.summary() and report.clean_samples == []


def test_declared_clean_reaches_every_prompt_and_is_counted(tmp_path):
    _scraped_csv(tmp_path)
    job = make_job(tmp_path, "r.csv", clean={}, **NO_FILTER)
    options = options_of(job.recipe.data.clean)
    assert options is not None and options.cut_at_heading  # {} turns every step on
    dataset, report = build_dataset(job)
    texts = _user_texts(dataset)
    assert len(texts) == 6 and all(f"<text>\n{CLEANED}\n</text>" in t for t in texts)
    easy, difficult = report.summary()["cleaning"]["easy"], report.cleaning["difficult"]
    assert easy["sections"] == 6 and easy["changed"] == 6
    assert easy["hyphens_joined"] == 6 and easy["boilerplate_lines"] == 6
    assert easy["cut_chars"] > 0 and easy["chars_out"] == 6 * len(CLEANED)
    assert difficult["sections"] == 6 and difficult["changed"] == 0
    sample = report.clean_samples[0]
    assert sample["aspect"] == "easy" and sample["after"] == CLEANED
    assert sample["chars"] == [len(SCRAPED), len(CLEANED)]
    assert sample["changes"]["hyphens_joined"] == 1


def test_clean_options_are_in_the_cache_key(tmp_path):
    _scraped_csv(tmp_path)
    tokenizer = make_job(tmp_path, "r.csv", **NO_FILTER).tokenizer()
    keys = {
        cache_key(make_job(tmp_path, "r.csv", clean=clean, **NO_FILTER), tokenizer)
        for clean in (None, {}, {"cut_at_heading": False}, {"extra_headings": ["Limitations"]})
    }
    assert len(keys) == 4
    job = make_job(tmp_path, "r.csv", clean={"cut_at_heading": False}, **NO_FILTER)
    dataset, _ = build_dataset(job, tokenizer=tokenizer)
    assert all("References" in text and "Copyright" not in text for text in _user_texts(dataset))


def test_training_eval_and_predict_read_the_same_text(tmp_path):
    """The predict request and the eval row carry exactly the training prompt's section."""
    from llmscisci_cfg.data.table import read_table
    from llmscisci_cfg.eval.evaluate import eval_data
    from llmscisci_cfg.predict.sections import Sections

    _scraped_csv(tmp_path)
    train = make_job(tmp_path, "r.csv", clean={}, **NO_FILTER)
    tokenizer = train.tokenizer()
    dataset, _ = build_dataset(train, tokenizer=tokenizer)
    built = {(r["id"], r["aspect"]): r["prompt"][1]["content"] for r in dataset["test"]}
    evaluated = eval_data(train, "test", None, tokenizer).rows
    assert {(r["id"], r["aspect"]): r["prompt"][1]["content"] for r in evaluated} == built

    predict = make_job(tmp_path, "r.csv", method="predict", clean={}, columns={"id": "doi"})
    table = read_table(predict.data.require())
    context = Sections.create(predict, "cpu", table)
    for i, row in enumerate(table.rows):
        for aspect in ("easy", "difficult"):
            if (row["doi"], aspect) in built:
                item = context.item(i, aspect, row)
                user = item.requests[0].messages[-1]["content"]
                assert user == built[(row["doi"], aspect)] and not item.truncated
    assert any(CLEANED in text for text in built.values())


def test_preprocess_preview_shows_before_and_after(cli, tmp_path):
    _scraped_csv(tmp_path)
    make_job(tmp_path, "r.csv", clean={}, **NO_FILTER)
    recipe = tmp_path / "recipe.yaml"
    text = cli("preprocess", recipe, "--preview", "1")
    assert text.exit_code == 0, text.output
    assert "cleaning:\n  easy:       6 of 6 sections changed" in text.output
    assert "--- clean: 10.1/doc.000 / easy" in text.output
    assert f"before: {' '.join(SCRAPED.split())}" in text.output
    assert f"after:  {CLEANED}" in text.output
    as_json = cli("preprocess", recipe, "--preview", "2", "--json")
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert [s["after"] for s in summary["clean_preview"]] == [CLEANED, CLEANED]
    assert summary["cleaning"]["easy"]["hyphens_joined"] == 6
