"""`measure.Prompts`: each aspect's prompt rendered once and filled in, token counts taken
between added tokens; both must equal the plain way (render every conversation, tokenize it)
for every shipped template, method and awkward section text."""

from __future__ import annotations

import pytest

from llmscisci_cfg.data import measure
from llmscisci_cfg.data.measure import Prompts, plain_measure, text_is_plain
from llmscisci_cfg.recipe.loader import load_job
from tests.data_helpers import constrained_task

TEXTS = [
    "Short.",
    "The code was public.\nThe data was not.\n\n\nNeither was the seed.",
    "Unicode: naïve café, pre‐ trained “quotes”, emoji 🎉, CJK 数据, RTL שלום.",
    "Looks like markup: <|im_end|> <end_of_turn> <|eot_id|> </text> <label>[1]</label>",
    "Jinja in the data: {{ text }} {% if x %} {# c #} and a tab\tand CR\r\nline.",
    "x" * 3000,
    "  padded on both sides with spaces  ",
    "1",
]
ANSWER = "<think>\nA reason.\n</think>\n<label>\n[1, 0, 0, 0, 0]\n</label>"


def _rows(prompts: Prompts, method: str) -> list[dict]:
    rows = []
    for i, text in enumerate(TEXTS):
        aspect = ("easy", "difficult")[i % 2]
        row = {"aspect": aspect, "text": text.strip(), "prompt": prompts.messages(aspect, text)}
        if method == "sft":
            row["completion"] = [{"role": "assistant", "content": ANSWER}]
        if method == "dpo":
            row["chosen"] = [{"role": "assistant", "content": ANSWER}]
            row["rejected"] = [{"role": "assistant", "content": "x" * (i * 40 + 1)}]
        rows.append(row)
    return rows


@pytest.mark.parametrize("template", ["tiny", "chatml", "llama3", "gemma3"])
@pytest.mark.parametrize("method", ["grpo", "sft", "dpo"])
def test_fast_counts_equal_the_plain_way(template, method, monkeypatch):
    monkeypatch.setattr(measure, "CHECKED", 0)  # no self-check: the fast way alone
    job = load_job("builtin:quickstart/sft_tiny", (f"template.name={template}",))
    tokenizer = job.tokenizer()
    prompts = Prompts(tokenizer, job.task)
    rows = _rows(prompts, method)
    for row in rows:
        assert row["prompt"] == job.task.messages(row["aspect"], row["text"])
    answers = {"grpo": (), "sft": ("completion",), "dpo": ("chosen", "rejected")}[method]
    prompt, total = prompts.lengths(rows, answers)
    assert prompts.fast and prompts._windowed is not None
    plain = plain_measure(tokenizer)
    assert prompt == plain([r["prompt"] for r in rows], True)
    if method == "grpo":
        assert total is None
        return
    expected = [plain([r["prompt"] + r[a] for r in rows], False) for a in answers]
    assert total == [max(v) for v in zip(*expected, strict=True)]
    counts: list = [None] * len(rows)  # every row was counted the fast way, none fell back
    prompts._windowed(rows, (), counts)
    assert None not in counts


def test_a_row_whose_prompt_is_not_its_aspects_form_is_counted_the_plain_way(monkeypatch):
    monkeypatch.setattr(measure, "CHECKED", 0)
    job = load_job("builtin:quickstart/sft_tiny")
    tokenizer = job.tokenizer()
    prompts = Prompts(tokenizer, job.task)
    rows = _rows(prompts, "grpo")
    rows[1]["prompt"] = job.task.messages("difficult", "a cut section […] end")  # truncated
    counts: list = [None] * len(rows)
    prompts._windowed(rows, (), counts)
    assert counts[1] is None and None not in counts[:1] + counts[2:]
    assert prompts.lengths(rows, ())[0] == plain_measure(tokenizer)(
        [r["prompt"] for r in rows], True
    )


def test_the_self_check_falls_back_when_the_fast_way_disagrees():
    job = load_job("builtin:quickstart/sft_tiny")
    tokenizer = job.tokenizer()
    prompts = Prompts(tokenizer, job.task)
    rows = _rows(prompts, "grpo")
    window = prompts._window("easy", ())
    window.constant += 1  # a wrong count: the check on the first rows catches it
    assert prompts.lengths(rows, ())[0] == plain_measure(tokenizer)(
        [r["prompt"] for r in rows], True
    )
    assert not prompts.fast


def test_other_templates_render_every_conversation(tmp_path):
    template = tmp_path / "mine.jinja"
    template.write_text(
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}",
        encoding="utf-8",
    )
    job = load_job(
        "builtin:quickstart/sft_tiny",
        (f"template.file={template}", "template.name=null", "method.assistant_only_loss=false"),
    )
    tokenizer = job.tokenizer()
    prompts = Prompts(tokenizer, job.task)
    rows = _rows(prompts, "sft")
    counts: list = [None] * len(rows)
    prompts._windowed(rows, (), counts)
    assert counts == [None] * len(rows)  # not a shipped template: no fast way
    prompt, total = prompts.lengths(rows, ("completion",))
    plain = plain_measure(tokenizer)
    assert prompt == plain([r["prompt"] for r in rows], True)
    assert total == plain([r["prompt"] + r["completion"] for r in rows], False)


def test_a_task_prompt_that_transforms_the_text_is_rendered_per_section(tmp_path):
    task = constrained_task(tmp_path, "", "plain.yaml")
    overrides = (
        f"data.task={task}",
        "data.task_overrides={user_prompt: '{{ text | upper }} ({{ text | length }} chars)'}",
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: t\nmodel: {name_or_path: 'builtin:tiny'}\ndata: {source: {path: x.csv}}\n"
        "method: {name: grpo}\nrewards: [{name: format}]\n",
        encoding="utf-8",
    )
    job = load_job(recipe, overrides)
    prompts = Prompts(job.tokenizer(), job.task)
    assert prompts._form("easy") is None
    assert prompts.messages("easy", "abc") == job.task.messages("easy", "abc")
    assert prompts.messages("easy", "abc")[1]["content"] == "ABC (3 chars)"


@pytest.mark.parametrize(
    ("source", "plain"),
    [
        ("<text>\n{{ text }}\n</text>", True),
        ("{{ text }}{{ text }}", True),
        ("{{ title }}: {{text}}", True),
        ("{{ text | trim }}", False),
        ("{{ text[:100] }}", False),
        ("{% if text %}{{ text }}{% endif %}", False),
        ("{% set t = text %}{{ t }}", False),
        ("{{ text ~ '!' }}", False),
        ("no section at all", False),
        ("{{ broken", False),
    ],
)
def test_text_is_plain(source, plain):
    assert text_is_plain(source) is plain
