"""Token budgets: structured output reserves room for the longest answer its grammar allows
(`task/grammar.py::label_cost`), so every shipped recipe's ``generation.max_new_tokens`` must
cover that reserve for its model's tokenizer, and on the tiny model prompt + budget must fit the
2048-token context. The figures the recipes' comments quote are checked here too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmscisci_cfg.models.tiny import MAX_POSITIONS, load_tiny_tokenizer
from llmscisci_cfg.recipe.loader import load_recipe
from llmscisci_cfg.task.grammar import Constraint, label_cost
from llmscisci_cfg.task.spec import load_task
from tests.conftest import RECIPES
from tests.studies.conftest import STUDIES, sample_rows

STUDY_RECIPES = sorted(p for s in STUDIES.values() for p in s.recipes.glob("*.yaml"))
TINY = [p for p in STUDY_RECIPES if p.stem.endswith("_tiny")]
HUB = [p for p in STUDY_RECIPES if not p.stem.endswith("_tiny")]


def _tiny_label_recipes() -> list[Path]:
    """Every shipped recipe on a built-in tiny model whose task answers with labels (any
    study, a new one included)."""
    out = []
    for path in sorted(RECIPES.rglob("*.yaml")):
        recipe = load_recipe(path)
        if recipe.model.name_or_path.startswith("builtin:tiny"):
            task = load_task(recipe.data.task, recipe.source_dir)
            out += [path] if task.kind == "label" else []
    return out


TAGS = 4 + 3  # <think> </think> <label> </label> (added tokens of the tiny tokenizer) + 3 newlines


@pytest.fixture(scope="module")
def tokenizer():
    return load_tiny_tokenizer()


def _job(path: Path):
    from llmscisci_cfg.recipe.resolve import resolve

    return resolve(load_recipe(path), cuda=False)


def _prompt_tokens(tokenizer, messages) -> int:
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return len(ids)


@pytest.mark.parametrize("path", _tiny_label_recipes(), ids=lambda p: str(p.relative_to(RECIPES)))
def test_the_grammar_and_the_fixed_prompt_fit_the_tiny_context(tokenizer, path):
    """On every tiny label recipe: the grammar compiles at the recipe's budget, and the prompt
    without its text (what truncation cannot cut) leaves room for that budget."""
    from llmscisci_cfg.models.structured import compile_check

    job = _job(path)
    budget = job.generation.sampling.max_new_tokens
    for aspect in job.aspects:
        kind = job.task.label_kind(aspect)
        compile_check(tokenizer, Constraint.answer(kind), budget)
        fixed = _prompt_tokens(tokenizer, job.task.messages(aspect, ""))
        assert fixed + budget <= MAX_POSITIONS, (aspect, fixed, budget)


@pytest.mark.parametrize("path", TINY, ids=lambda p: str(p.relative_to(RECIPES)))
def test_tiny_recipes_fit_the_tiny_model(tokenizer, path):
    """The grammar compiles at the recipe's budget, and the longest sample prompt (with the
    longest rows as few-shot examples, each with the sample's longest answer) leaves room for
    it in the tiny model's context."""
    from llmscisci_cfg.models.structured import compile_check

    job = _job(path)
    assert job.recipe.model.name_or_path == "builtin:tiny"
    budget = job.generation.sampling.max_new_tokens
    study = STUDIES[path.parent.name]
    task = job.task
    kind = task.label_kind(study.aspect)
    constraint = job.generation.constraint(study.aspect) or Constraint.answer(kind)
    compile_check(tokenizer, constraint, budget)
    rows = sorted(sample_rows(study), key=lambda r: -len(r[study.text_column]))
    longest = rows[0][study.text_column]
    messages = task.messages(study.aspect, longest)
    shots = getattr(job.recipe.method, "shots", 0)
    labelled = [r for r in rows if r[study.text_column].strip()]
    answers = [task.completion("", kind.decode_gold(r[study.label_column]), study.aspect) for r in labelled]  # fmt: skip
    answer = max(answers, key=len)  # a bound on any shot's answer
    examples = []
    for row in rows[1 : shots + 1]:
        examples += [task.messages(study.aspect, row[study.text_column])[1]]
        examples += [{"role": "assistant", "content": answer}]
    prompt = _prompt_tokens(tokenizer, [messages[0], *examples, messages[1]])
    if job.recipe.method.name == "grpo":
        budget = max(budget, job.recipe.method.max_completion_length)
    assert prompt + budget <= MAX_POSITIONS, (prompt, budget)


def test_the_tiny_flourishing_figures_the_recipes_quote(tokenizer):
    """976 tokens for the longest answer, 1228 reserved, 1235 with the tags; and the task's own
    prompt would not fit beside that reserve (why the tiny recipes use a short prompt)."""
    task = load_task("builtin:flourishing", Path("."))
    kind = task.label_kind("flourishing")
    longest = kind.render(kind.longest())
    assert len(tokenizer.encode(longest, add_special_tokens=False)) == 976
    assert label_cost(kind, tokenizer) == 1228 and label_cost(kind, tokenizer) + TAGS == 1235
    for path in (RECIPES / "flourishing").glob("*_tiny.yaml"):
        text = path.read_text(encoding="utf-8")
        budget = int(re.search(r"max_new_tokens: (\d+)", text).group(1))
        assert budget >= 1235 and "1235" in text, path
    full = _prompt_tokens(tokenizer, task.messages("flourishing", "A short post."))
    assert full + 1235 > MAX_POSITIONS


@pytest.mark.parametrize("path", HUB, ids=lambda p: str(p.relative_to(RECIPES)))
def test_hub_recipes_leave_room_for_the_longest_answer(path):
    """With the model's own tokenizer, when it is in the local Hugging Face cache (never
    downloaded): the grammar compiles at the recipe's budget and leaves reasoning room."""
    from transformers import AutoTokenizer

    from llmscisci_cfg.models.structured import compile_check

    job = _job(path)
    name = job.recipe.model.name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        pytest.skip(f"{name}'s tokenizer is not in the local Hugging Face cache")
    study = STUDIES[path.parent.name]
    kind = job.task.label_kind(study.aspect)
    budget = job.generation.sampling.max_new_tokens
    compile_check(tokenizer, Constraint.answer(kind), budget)
    tags = sum(len(t.encode()) for t in ("<think>", "</think>", "<label>", "</label>")) + 3
    assert budget - label_cost(kind, tokenizer) - tags >= 200  # reasoning room


def test_hub_flourishing_budget_is_the_one_the_comments_explain():
    """768 everywhere a flourishing hub recipe generates under the grammar (541 reserved with
    Llama 3.2's tokenizer, measured when the recipes were written; the test above re-measures
    it where the tokenizer is cached)."""
    for path in (RECIPES / "flourishing").glob("*_llama3.2.yaml"):
        assert load_recipe(path).generation.max_new_tokens == 768, path
    for path in (RECIPES / "flourishing").glob("label_*_shot.yaml"):
        assert load_recipe(path).generation.max_new_tokens == 768, path
    text = (RECIPES / "flourishing" / "label_zero_shot.yaml").read_text(encoding="utf-8")
    assert "400 tokens" in text and "= 508" in text and "541" in text and "227" in text
