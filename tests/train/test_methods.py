"""The training methods' registry: one descriptor per schema entry that trains, looked up by
name; the load-time checks and the data stage name no method."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import METHODS, method_names
from llmscisci_cfg.train import methods
from tests.conftest import REPO


def test_every_schema_entry_that_trains_has_one_descriptor():
    assert list(methods.REGISTRY) == method_names(trains=True) == ["sft", "dpo", "grpo", "kto"]
    for name, method in methods.REGISTRY.items():
        assert method.name == name and method.schema in METHODS
        assert method.schema.model_fields["name"].annotation.__args__ == (name,)
        assert method.config_class == f"trl.{name.upper()}Config"
        assert method.trainer_class == f"trl.{name.upper()}Trainer"


def test_get_refuses_a_method_that_trains_nothing_and_an_unknown_name():
    with pytest.raises(UserError) as info:
        methods.get("predict")
    assert "a predict recipe (method: predict) builds no train/test split and trains nothing" in (
        str(info.value)
    )
    assert "llmscisci predict RECIPE --limit N" in str(info.value)
    with pytest.raises(UserError, match="unknown training method 'ppo'; choose one of sft, dpo"):
        methods.get("ppo")
    assert methods.find("ppo") is None and methods.find("kto") is methods.get("kto")


def test_the_facts_the_checks_read():
    """What each method needs, as its schema entry says (`schema.Needs`)."""
    needs = {m.model_fields["name"].annotation.__args__[0]: m.needs for m in METHODS}
    assert needs["sft"].gold and needs["sft"].traces and not needs["sft"].rewards
    assert needs["dpo"].pairs and needs["dpo"].repeated_ids and needs["dpo"].gold is None
    assert needs["grpo"].rewards and needs["grpo"].rollouts
    assert needs["kto"].gold and needs["kto"].scored_answers and not needs["kto"].pairs
    assert not needs["predict"].trains
    assert method_names(rewards=True) == ["grpo"] and method_names(trains=False) == ["predict"]


def _matched_names(path: Path, names: set[str]) -> list[str]:
    """Method names a module compares a value with (``==``, ``!=``, ``in``) or keys a table by."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            operands = [k for k in node.keys if k is not None]
        else:
            continue
        for op in operands:
            values = op.elts if isinstance(op, (ast.Tuple, ast.List, ast.Set)) else [op]
            found += [
                f"line {node.lineno}: {v.value!r}"
                for v in values
                if isinstance(v, ast.Constant) and v.value in names
            ]
    return found


@pytest.mark.parametrize(
    "module",
    [
        "recipe/checks.py",
        "recipe/resolve.py",
        "recipe/loader.py",
        *(f"data/{p.name}" for p in sorted((REPO / "llmscisci_cfg" / "data").glob("*.py"))),
        "train/compile.py",
        "train/build.py",
        "train/memory.py",
        "train/plan.py",
        "train/runner.py",
    ],
)
def test_a_module_outside_the_methods_names_no_method(module):
    """A method is looked up by name or read from its facts, never matched as a string."""
    assert _matched_names(REPO / "llmscisci_cfg" / module, {*method_names(), "predict"}) == []


def test_the_name_matching_probe_finds_what_it_looks_for(tmp_path):
    code = 'if job.method == "dpo": pass\nANSWERS = {"sft": 1}\nok = m in ("a", "grpo")\n'
    (tmp_path / "m.py").write_text(code)
    assert _matched_names(tmp_path / "m.py", {"sft", "dpo", "grpo"}) == [
        "line 1: 'dpo'",
        "line 2: 'sft'",
        "line 3: 'grpo'",
    ]


def test_reference_models_by_method():
    """DPO and KTO always keep a reference (the adapter off, or a copy passed as ref_model);
    GRPO only with beta > 0, reloaded by TRL from the policy's path; SFT never."""
    got = {n: (m.needs_reference(0.0), m.needs_reference(0.1), m.ref_model_arg) for n, m in methods.REGISTRY.items()}  # fmt: skip
    assert got == {
        "sft": (False, False, False),
        "dpo": (True, True, True),
        "grpo": (False, True, False),
        "kto": (True, True, True),
    }


def test_memory_factors_by_method():
    f = {n: m.memory for n, m in methods.REGISTRY.items()}
    assert (f["dpo"].sequences, f["sft"].sequences, f["kto"].sequences) == (2, 1, 1)
    assert [n for n, x in f.items() if not x.dropout] == ["dpo", "kto"]
    assert [n for n, x in f.items() if x.generates] == ["grpo"]
    assert [n for n, x in f.items() if x.scores_completions] == ["grpo"]
