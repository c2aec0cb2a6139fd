"""Reward names, plug-ins and composition: validate-time and plan-time checks, TRL's contract."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.schema import RewardSpec
from llmscisci_cfg.rewards.builtin import WhitespaceTokenizer
from llmscisci_cfg.rewards.compose import AsyncRewardFn, RewardFn, build_rewards, needs_tokenizer
from llmscisci_cfg.rewards.registry import (
    BUILTINS,
    TRL_KWARGS,
    check_callables,
    check_specs,
    load_function,
    module_exists,
    parse_name,
)
from tests.rewards.conftest import kinds

REPO = Path(__file__).resolve().parents[2]
GOOD = "<think>a</think><label>[1, 0, 1, 0, 0]</label>"

PLUGIN = '''
def brevity(completions, max_chars=100, **kwargs):
    """1 for completions up to max_chars characters."""
    return [1.0 if len(c if isinstance(c, str) else c[0]["content"]) <= max_chars else 0.0 for c in completions]

def by_doc(completions, id, num_categories, **kwargs):
    return [float(num_categories) for _ in completions]

def needs_doi(completions, doi, **kwargs):
    return [0.0 for _ in completions]

def strict(completions):
    return [0.0 for _ in completions]

def positional_only(completions, /, **kwargs):
    return [0.0 for _ in completions]

async def judge(completions, **kwargs):
    return [0.5 for _ in completions]

NOT_A_FUNCTION = 3
'''


def pairs(found):
    """``(key, message)`` of each `Problem`."""
    return [(p.key, p.message) for p in found]


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "my_rewards.py").write_text(PLUGIN)
    (tmp_path / "broken.py").write_text("def f(completions, **kwargs):\n    return [\n")
    return tmp_path


def specs(*entries) -> list[RewardSpec]:
    return [RewardSpec(**e) if isinstance(e, dict) else RewardSpec(name=e) for e in entries]


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name,kind,target,attr",
    [
        ("format", "builtin", "format", ""),
        ("pkg.mod:fn", "module", "pkg.mod", "fn"),
        ("rewards.py:fn", "file", "rewards.py", "fn"),
        ("sub/dir/r.py:fn", "file", "sub/dir/r.py", "fn"),
        ("../r.py:fn", "file", "../r.py", "fn"),
    ],
)
def test_parse_name(name, kind, target, attr):
    ref = parse_name(name)
    assert (ref.kind, ref.target, ref.attr) == (kind, target, attr)


@pytest.mark.parametrize("name", ["pkg.mod:", "pkg.mod:1fn", ":fn", "pkg..mod:fn", "my-pkg:fn"])
def test_parse_name_rejects_malformed_plugins(name):
    with pytest.raises(UserError, match="package.module:function"):
        parse_name(name)


def test_builtins_and_their_params():
    assert list(BUILTINS) == [
        "format",
        "label_valid",
        "stepwise_label",
        "hamming",
        "correct",
        "cot_length",
        "cond_cot_stepwise",
    ]
    strict = {"constrained": False}  # the task's label constraints: off, as the research scores
    assert {n: b.params for n, b in BUILTINS.items()} == {
        "format": {},
        "label_valid": strict,
        "stepwise_label": strict,
        "hamming": strict,
        "correct": strict,
        "cot_length": {},
        "cond_cot_stepwise": {"alpha": 0.1, "threshold": 1.0} | strict,
    }
    assert BUILTINS["hamming"].reads == BUILTINS["correct"].reads == ["gold"]


# ----------------------------------------------------------------------------- validate time


VALIDATE = [
    (
        [
            {"name": "format"},
            {"name": "cond_cot_stepwise", "params": {"alpha": 0.2, "threshold": 1}},
        ],
        [],
    ),
    (
        [{"name": "format"}, {"name": "formatt"}],
        [
            (
                ("rewards", 1, "name"),
                "unknown reward 'formatt' (did you mean 'format'?); built-ins: format, label_valid, "
                "stepwise_label, hamming, correct, cot_length, cond_cot_stepwise; or a plug-in is "
                "written "
                "package.module:function or path/to/file.py:function",
            )
        ],
    ),
    (
        [{"name": "cond_cot_stepwise", "params": {"alpah": 0.2}}],
        [
            (
                ("rewards", 0, "params", "alpah"),
                "cond_cot_stepwise has no parameter 'alpah' (did you mean 'alpha'?); "
                "parameters: alpha, threshold, constrained",
            )
        ],
    ),
    (
        [{"name": "hamming", "params": {"beta": 1}}],
        [
            (
                ("rewards", 0, "params", "beta"),
                "hamming has no parameter 'beta'; parameters: constrained",
            )
        ],
    ),
    (
        [{"name": "cond_cot_stepwise", "params": {"alpha": "big"}}],
        [
            (
                ("rewards", 0, "params", "alpha"),
                "cond_cot_stepwise.alpha must be a finite number like 0.1, got 'big'",
            )
        ],
    ),
    (
        [{"name": "label_valid", "params": {"num_categories": 4}}],
        [
            (
                ("rewards", 0, "params", "num_categories"),
                "num_categories is supplied by the task (its category count); "
                "remove it from params",
            )
        ],
    ),
    (
        [{"name": "no_such_pkg_xyz.rewards:fn"}],
        [
            (
                ("rewards", 0, "name"),
                "plug-in module 'no_such_pkg_xyz.rewards' not found on the Python path; install it, "
                "add its folder to PYTHONPATH, or name the file instead: path/to/file.py:function",
            )
        ],
    ),
    (
        [{"name": "json.decoder:JSONDecoder"}],
        [],
    ),  # an importable module (the function is checked at plan time)
    (
        [{"name": "my_rewards.py:brevity"}, {"name": "my_rewards.py:anything"}],
        [],
    ),  # file exists; attr checked later
]


@pytest.mark.parametrize("entries,expected", VALIDATE)
def test_check_specs(entries, expected, plugin_dir):
    assert pairs(check_specs(specs(*entries), plugin_dir)) == expected


def test_check_specs_missing_file(plugin_dir):
    ((path, message),) = pairs(check_specs(specs("nope/rewards.py:fn"), plugin_dir))
    assert path == ("rewards", 0, "name")
    assert message.startswith(f"plug-in file not found: {plugin_dir / 'nope' / 'rewards.py'}")


def test_module_exists_runs_no_package_code(tmp_path, monkeypatch):
    pkg = tmp_path / "boom_pkg_rw"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('package code ran')\n")
    (pkg / "scores.py").write_text(
        "def fn(completions, **kwargs):\n    return [1.0] * len(completions)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert module_exists("boom_pkg_rw.scores")
    assert not module_exists("boom_pkg_rw.missing")
    assert not module_exists("boom_pkg_rw.scores.deeper")
    assert "boom_pkg_rw" not in sys.modules
    assert check_specs(specs("boom_pkg_rw.scores:fn"), tmp_path) == []


def test_validate_path_imports_no_ml_library():
    code = (
        "import sys; from pathlib import Path\n"
        "from llmscisci_cfg.rewards.registry import check_specs\n"
        "from llmscisci_cfg.recipe.schema import RewardSpec\n"
        "check_specs([RewardSpec(name='format'), RewardSpec(name='x.py:f')], Path('.'))\n"
        "heavy = [m for m in ('torch', 'trl', 'transformers', 'peft', 'datasets') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


# ----------------------------------------------------------------------------- plan time (imports)


def test_plugin_file_loads_and_binds(plugin_dir):
    entries = specs(
        {
            "name": "my_rewards.py:brevity",
            "params": {"max_chars": 10},
            "weight": 0.5,
            "alias": "short",
        }
    )
    assert check_callables(entries, plugin_dir) == []
    stack = build_rewards(entries, plugin_dir, label_kind=kinds(5))
    assert stack.names == ["short"] and stack.weights == [0.5]
    fn = stack.funcs[0]
    assert fn.__name__ == "short" and fn.bound == {"max_chars": 10}
    assert fn(completions=["short", "much longer than ten"], prompts=["p", "p"]) == [1.0, 0.0]


def test_plugin_module_loads(tmp_path, monkeypatch):
    pkg = tmp_path / "good_pkg_rw"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "scores.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    stack = build_rewards(specs("good_pkg_rw.scores:brevity"), tmp_path, label_kind=kinds(5))
    assert stack.funcs[0](completions=["x" * 101]) == [0.0]


def test_injected_arguments_reach_plugins(plugin_dir):
    stack = build_rewards(specs("my_rewards.py:by_doc"), plugin_dir, label_kind=kinds(7))
    assert stack.funcs[0].bound == {"num_categories": 7}
    assert stack.funcs[0](completions=["a"], id=["doc"]) == [7.0]


PLAN = [
    (
        "my_rewards.py:nope",
        {},
        "'my_rewards.py:nope': my_rewards.py has no function 'nope'; it defines: brevity, "
        "by_doc, judge, needs_doi, positional_only, strict",
    ),
    (
        "my_rewards.py:brevit",
        {},
        "'my_rewards.py:brevit': my_rewards.py has no function 'brevit' (did you mean "
        "'brevity'?); it defines: brevity, by_doc, judge, needs_doi, positional_only, strict",
    ),
    (
        "my_rewards.py:NOT_A_FUNCTION",
        {},
        "'my_rewards.py:NOT_A_FUNCTION': 'NOT_A_FUNCTION' in my_rewards.py is a "
        "int, not a function",
    ),
    (
        "no_such_pkg_xyz:fn",
        {},
        "plug-in module 'no_such_pkg_xyz' not found on the Python path; install it, add its "
        "folder to PYTHONPATH, or name the file instead: path/to/file.py:function",
    ),
    (
        "my_rewards.py:brevity",
        {"max_char": 3},
        "my_rewards.py:brevity: the function has no parameter 'max_char' "
        "(did you mean 'max_chars'?); its parameters: completions, max_chars",
    ),
    (
        "my_rewards.py:brevity",
        {"gold": 3},
        "my_rewards.py:brevity: 'gold' is passed by the trainer on every call; "
        "it cannot be a parameter",
    ),
    (
        "my_rewards.py:needs_doi",
        {},
        "my_rewards.py:needs_doi: it needs 'doi', which is neither a dataset column "
        "(aspect, gold, id) nor a trainer argument (prompts, completions, completion_ids, trainer_state, log_extra, "
        "log_metric); give it a default or add the column",
    ),
    (
        "my_rewards.py:strict",
        {},
        "my_rewards.py:strict: it must accept **kwargs: TRL also passes aspect, "
        "completion_ids, gold, id, log_extra, log_metric, prompts, trainer_state and it would fail",
    ),
    (
        "my_rewards.py:positional_only",
        {},
        "my_rewards.py:positional_only: parameter 'completions' is "
        "positional-only; TRL passes everything by keyword",
    ),
]


@pytest.mark.parametrize("name,params,message", PLAN, ids=[f"{n}{sorted(p)}" for n, p, _ in PLAN])
def test_check_callables_problems(name, params, message, plugin_dir):
    found = check_callables(specs({"name": name, "params": params}), plugin_dir)
    key = ("rewards", 0, "params", next(iter(params))) if params else ("rewards", 0, "name")
    assert pairs(found) == [(key, message)]
    with pytest.raises(UserError) as err:
        build_rewards(specs({"name": name, "params": params}), plugin_dir, label_kind=kinds(5))
    assert message in str(err.value)


def test_plugin_file_that_fails_to_import(plugin_dir):
    ((key, message),) = pairs(check_callables(specs("broken.py:f"), plugin_dir))
    assert key == ("rewards", 0, "name")
    assert (
        message
        == f"importing plug-in file {plugin_dir / 'broken.py'} failed: SyntaxError at line 2: '[' was never closed"
    )


def test_extra_dataset_column_satisfies_a_plugin(plugin_dir):
    entries = specs("my_rewards.py:needs_doi")
    assert (
        check_callables(entries, plugin_dir, columns=["id", "aspect", "prompt", "gold", "doi"])
        == []
    )


def test_builtin_hamming_needs_gold(plugin_dir):
    ((key, message),) = pairs(
        check_callables(specs("hamming"), plugin_dir, columns=["id", "prompt"])
    )
    assert key == ("rewards", 0, "name") and "it needs 'gold'" in message


def test_load_function_builtin_and_unknown(plugin_dir):
    assert load_function("format", plugin_dir) is BUILTINS["format"].func
    with pytest.raises(UserError, match="unknown reward 'fromat'"):
        load_function("fromat", plugin_dir)


# ----------------------------------------------------------------------------- composition


def test_stack_binds_params_weights_and_names():
    entries = specs(
        {"name": "format", "weight": 0.5},
        {"name": "cond_cot_stepwise", "params": {"alpha": 1.0}, "alias": "cot1"},
        {"name": "cond_cot_stepwise", "alias": "cot01"},
        {"name": "hamming", "weight": 2},
    )
    tok = WhitespaceTokenizer()
    assert needs_tokenizer(entries, Path("."))
    stack = build_rewards(entries, Path("."), label_kind=kinds(5), tokenizer=tok)
    assert stack.names == ["format", "cot1", "cot01", "hamming"]
    assert stack.weights == [0.5, 1.0, 1.0, 2.0]
    assert [f.__name__ for f in stack.funcs] == stack.names
    bound = stack.funcs[1].bound
    assert bound == {"alpha": 1.0, "tokenizer": tok, "label_kind": kinds(5)}
    text = "<think>a b c</think><label>[1, 0, 1, 0, 0]</label>"
    kwargs = {
        "prompts": ["p"],
        "completion_ids": [[1]],
        "gold": [[1, 0, 1, 0, 0]],
        "id": ["d"],
        "aspect": ["easy"],
    }
    assert [f(completions=[text], **kwargs) for f in stack.funcs] == [
        [1.0],
        [4.0],
        [pytest.approx(1.3)],
        [1.0],
    ]


def test_tokenizer_is_required_when_a_reward_takes_one():
    assert not needs_tokenizer(specs("format", "hamming"), Path("."))
    with pytest.raises(ValueError, match="takes a tokenizer"):
        build_rewards(specs("cot_length"), Path("."), label_kind=kinds(5))


def test_async_plugin_gets_an_async_wrapper(plugin_dir):
    import asyncio
    import inspect

    fn = build_rewards(specs("my_rewards.py:judge"), plugin_dir, label_kind=kinds(5)).funcs[0]
    assert isinstance(fn, AsyncRewardFn) and inspect.iscoroutinefunction(fn.__call__)
    assert asyncio.run(fn(completions=["a", "b"])) == [0.5, 0.5]


def test_reward_fns_survive_pickling():
    import pickle

    fn = build_rewards(
        specs({"name": "cond_cot_stepwise", "alias": "c"}),
        Path("."),
        kinds(5),
        WhitespaceTokenizer(),
    ).funcs[0]
    again = pickle.loads(pickle.dumps(fn))
    assert again.__name__ == "c" and again(completions=[GOOD]) == fn(completions=[GOOD])


def test_trl_names_and_calls_the_stack(plugin_dir):
    """TRL 1.16's own reward loop (`GRPOTrainer._calculate_rewards`) drives the stack.

    It names each reward with `get_callable_name` (metrics ``rewards/<name>/mean``) and passes
    prompts, completions, completion_ids, trainer_state, log_extra, log_metric and the columns.
    """
    from types import SimpleNamespace

    torch = pytest.importorskip("torch")
    trl_utils = pytest.importorskip("trl.trainer.utils")
    from trl import GRPOTrainer

    entries = specs(
        {"name": "format", "alias": "fmt"},
        {"name": "hamming", "weight": 2.0},
        {"name": "my_rewards.py:brevity", "params": {"max_chars": 60}},
    )
    stack = build_rewards(entries, plugin_dir, label_kind=kinds(5))
    names = [trl_utils.get_callable_name(f) for f in stack.funcs]
    assert names == ["fmt", "hamming", "brevity"]
    assert not any(trl_utils.is_async_callable(f) for f in stack.funcs)
    assert not any(isinstance(f, functools.partial) for f in stack.funcs)

    prompt = [{"role": "user", "content": "label this"}]
    texts = [GOOD, "<think>a</think><label>[0, 0, 0, 0, 1]</label>" + " pad" * 20]
    inputs = [
        {"prompt": prompt, "id": "d1", "aspect": "easy", "gold": [1, 0, 1, 0, 0]} for _ in texts
    ]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    fake = SimpleNamespace(
        accelerator=SimpleNamespace(device="cpu", is_main_process=True),
        args=SimpleNamespace(report_to=[]),
        state=SimpleNamespace(global_step=0),
        reward_funcs=stack.funcs,
        reward_processing_classes=[None] * len(stack),
        reward_func_names=names,
        environments=None,
        _log_completion_extra=lambda *a, **k: None,
        _log_metric=lambda *a, **k: None,
    )
    out = GRPOTrainer._calculate_rewards(fake, inputs, [prompt] * 2, completions, [[1, 2], [3]])
    assert out.tolist() == [[1.0, 1.0, 1.0], [1.0, pytest.approx(0.4), 0.0]]
    weighted = (out * torch.tensor(stack.weights)).sum(dim=1)
    assert weighted.tolist() == [pytest.approx(4.0), pytest.approx(1.8)]
    assert set(TRL_KWARGS) >= {
        "prompts",
        "completions",
        "completion_ids",
        "trainer_state",
        "log_extra",
        "log_metric",
    }


def test_repr_hides_the_tokenizer():
    fn = RewardFn("x", BUILTINS["cot_length"].func, {"tokenizer": WhitespaceTokenizer()})
    assert repr(fn) == "RewardFn('x', 'cot_length', {})"


def test_recipe_loader_reports_reward_problems(tmp_path):
    """`llmscisci validate` (the loader) turns check_specs into located problems, exit 2."""
    from llmscisci_cfg.errors import RecipeError
    from llmscisci_cfg.recipe.loader import load_recipe

    source = (REPO / "recipes" / "quickstart" / "grpo_tiny.yaml").read_text()
    head, _, tail = source.partition("rewards:\n")
    rest = tail[tail.index("\ntrain:") :]
    text = (
        head
        + textwrap.dedent(
            """\
        rewards:
          - name: format
          - name: hammming
          - name: missing_rewards.py:fn
          - name: cond_cot_stepwise
            params: {alpah: 0.3}
        """
        )
        + rest
    )
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe)
    message = str(err.value)
    assert "rewards.1.name: unknown reward 'hammming' (did you mean 'hamming'?)" in message
    assert f"rewards.2.name: plug-in file not found: {tmp_path / 'missing_rewards.py'}" in message
    assert (
        "rewards.3.params.alpah: cond_cot_stepwise has no parameter 'alpah' (did you mean 'alpha'?)"
        in message
    )
    assert err.value.exit_code == 2


def test_category_counts_come_from_the_task(tmp_path):
    from llmscisci_cfg.recipe.loader import load_job
    from llmscisci_cfg.rewards.compose import default_label_kinds

    assert {k.n for k in default_label_kinds().values()} == {5}
    assert load_job(REPO / "recipes" / "quickstart" / "grpo_tiny.yaml").num_categories == 5
    source = (REPO / "recipes" / "quickstart" / "grpo_tiny.yaml").read_text()
    override = (
        "  task_overrides:\n    categories:\n      easy: [Code, Data, Other]\n    codes:\n"
        "      easy: {}\n    constraints: {}\n"
    )
    changed = tmp_path / "grpo.yaml"
    changed.write_text(source.replace("data:\n", "data:\n" + override, 1))
    assert load_job(changed).num_categories == {"easy": 3, "difficult": 5}
