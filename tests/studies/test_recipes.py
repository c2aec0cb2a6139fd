"""The study recipes as documents: each study ships zero- and few-shot, SFT and GRPO recipes on
a hub model and tiny variants; hub recipes read the data as the studies ship it (the citation
studies' split files, the flourishing posts joined with their codings); the README shows the studies' commands and figures; a misspelt study recipe is suggested."""

from __future__ import annotations

import pytest

from llmscisci_cfg.recipe.loader import load_recipe
from tests.conftest import RECIPES, REPO
from tests.studies.conftest import STUDIES

METHODS = {"label_zero_shot", "label_few_shot", "sft_llama3.2", "grpo_llama3.2"}


@pytest.mark.parametrize("study", list(STUDIES.values()), ids=lambda s: s.task)
def test_every_study_has_hub_and_tiny_recipes_on_its_task(study):
    names = {p.stem for p in study.recipes.glob("*.yaml")}
    assert names == METHODS | {"label_tiny", "label_few_shot_tiny", "sft_tiny", "grpo_tiny"}
    for path in study.recipes.glob("*.yaml"):
        recipe = load_recipe(path)
        assert recipe.data.task == f"builtin:{study.task}", path
        assert recipe.data.columns.id == study.id_column, path
        if path.stem.endswith("_tiny"):
            assert recipe.model.name_or_path == "builtin:tiny", path
            assert recipe.data.source.path == f"builtin:{study.sample}", path
            assert recipe.launch.device == "cpu" or recipe.method.name == "predict", path
        else:
            assert recipe.model.name_or_path == "meta-llama/Llama-3.2-1B-Instruct", path
            assert recipe.template.name == "llama3", path
        if recipe.method.name == "grpo":
            assert [r.name for r in recipe.rewards] == ["format", "label_valid", "correct"], path
        if recipe.method.name == "predict":
            assert recipe.generation.structured and recipe.generation.temperature == 0.0, path
        label = recipe.data.label_columns  # data.columns.label, or a joined data.labels table
        if recipe.method.name in ("sft", "grpo") or getattr(recipe.method, "shots", 0):
            assert label is not None and set(label) == {study.aspect}, path


@pytest.mark.parametrize("study", [STUDIES["citation_intent"], STUDIES["citation_function"]], ids=lambda s: s.task)  # fmt: skip
def test_citation_recipes_that_train_read_the_studys_split_files(study):
    """SciCite and ACL-ARC ship train/dev/test files: the training recipes name all three (the
    test file is what `eval` scores, the published figures' test set) and say how to point
    each at the user's copy."""
    for name in ("sft_llama3.2", "grpo_llama3.2"):
        path = study.recipes / f"{name}.yaml"
        data = load_recipe(path).data
        assert data.source is None, name
        assert data.splits.files() == {"train": "train.csv", "validation": "dev.csv", "test": "test.csv"}, name  # fmt: skip
        assert data.labels is None and data.label_columns == {study.aspect: "citation_class_label"}
        head = _head(path)
        for key in ("train", "validation", "test"):
            assert f"--set data.splits.{key}=" in head, (name, key)
        assert "data.source.path" not in head and "TODO" not in head, name
        assert "# Needs:" in head and "# Run:" in head and "llmscisci run" in head, name


@pytest.mark.parametrize("name", ["sft_llama3.2", "grpo_llama3.2", "label_zero_shot", "label_few_shot"])  # fmt: skip
def test_flourishing_hub_recipes_join_the_codings_to_the_posts(name):
    """The posts (tweets.csv) are the rows and the teacher's codings (answers.csv) are joined
    on message_id = id; training holds a fraction of the coded posts out by id, and the
    few-shot pool is the joined table's coded posts (a method.pool file is not joined)."""
    path = STUDIES["flourishing"].recipes / f"{name}.yaml"
    data = load_recipe(path).data
    assert data.source.path == "tweets.csv" and data.splits is None
    assert data.columns.id == "message_id" and data.columns.label is None
    labels = data.labels
    assert (labels.path, labels.id, labels.columns) == ("answers.csv", "id", {"flourishing": "answer"})  # fmt: skip
    head = _head(path)
    assert "--set data.source.path=" in head and "--set data.labels.path=" in head, name
    assert "coded.csv" not in head and "pandas" not in head and "TODO" not in head, name
    recipe = load_recipe(path)
    if recipe.method.name == "predict":
        assert ".jsonl" in head and "llmscisci score" in head, name  # a CSV would blank null gold
    else:
        assert data.split.test_fraction == 0.2, name
    if name == "label_few_shot":
        assert recipe.method.pool is None and recipe.method.shots == 3


def _head(path) -> str:
    """The comment above a recipe's first key."""
    return path.read_text(encoding="utf-8").split("\nversion:")[0]


def test_the_readme_shows_the_studies_with_their_figures():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    studies = text.split("## Studies", 1)[1].split("\n## ", 1)[0]
    for command in (
        "llmscisci predict builtin:citation_intent/label_zero_shot",
        "llmscisci predict builtin:citation_intent/label_few_shot",
        "llmscisci run builtin:citation_intent/sft_llama3.2",
        "llmscisci run builtin:citation_intent/grpo_llama3.2",
        "llmscisci predict builtin:flourishing/label_zero_shot",
        "llmscisci predict builtin:flourishing/label_few_shot",
        "llmscisci run builtin:flourishing/sft_llama3.2",
        "llmscisci run builtin:flourishing/grpo_llama3.2",
        "llmscisci predict builtin:citation_intent/label_tiny",
        "llmscisci run builtin:flourishing/sft_tiny",
    ):
        assert command in studies, command
    for figure in ("45.44", "78.33", "24.60", "67.9", "0.324", "0.769", "0.865"):
        assert figure in studies, figure
    for line in studies.splitlines():  # every builtin recipe the section names exists
        for ref in (w for w in line.split() if w.startswith("builtin:") and "/" in w):
            assert (RECIPES / f"{ref.removeprefix('builtin:').strip('`,')}.yaml").is_file(), ref


@pytest.mark.parametrize(
    ("ref", "suggestion"),
    [
        ("flourishing/sft_tny.yaml", "(did you mean builtin:flourishing/sft_tiny?)"),
        ("citation_intent/label_zero_shoot.yaml", "builtin:citation_intent/label_zero_shot"),
        ("quickstart/sft_tny.yaml", "(did you mean builtin:quickstart/sft_tiny?)"),
    ],
)
def test_a_misspelt_study_recipe_is_suggested(cli, tmp_path, ref, suggestion):
    result = cli("validate", str(tmp_path / ref))
    assert result.exit_code == 2 and suggestion in result.output, result.output
