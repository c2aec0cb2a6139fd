"""What a command prints at each level (`llmscisci_cfg.console`, ``--quiet`` / ``--verbose``).

In-process: the levels themselves, our own lines of a run (the session's shared SFT run at the
default level, a one-step run with ``--quiet``). The checks that the libraries' own output is
hidden or shown run ``llmscisci run`` in fresh processes (library state, such as progress
bars, logger levels and warnings already shown, would leak between in-process runs): slow.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmscisci_cfg import console
from tests.conftest import REPO
from tests.run_helpers import write_recipe


@pytest.fixture(autouse=True)
def _normal_level():
    yield
    console.set_level(console.NORMAL)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# ----------------------------------------------------------------------------- levels


def test_console_imports_no_ml_library():
    code = (
        "import sys; from llmscisci_cfg import console; console.set_level('quiet'); "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_level_comes_from_the_flag_else_the_environment(monkeypatch):
    monkeypatch.setattr(console, "_level", None)
    monkeypatch.setenv(console.ENV, "quiet")
    assert console.level() == "quiet"
    monkeypatch.setenv(console.ENV, "shouting")
    assert console.level() == "normal"
    console.set_level("verbose")
    assert console.level() == "verbose" and console.child_env() == {console.ENV: "verbose"}
    with pytest.raises(ValueError, match="quiet, normal, verbose"):
        console.set_level("loud")


def test_library_deprecations_are_ignored_below_verbose():
    def shown(module: str) -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn_explicit("old", FutureWarning, "x.py", 1, module=module, registry={})
        return [str(w.message) for w in seen]

    console.set_level("normal")
    assert shown("transformers.modeling_utils") == []
    assert shown("trl.trainer.grpo_trainer") == []
    assert shown("my_rewards") == ["old"]  # the user's own code still warns
    console.set_level("verbose")
    assert shown("transformers.modeling_utils") == ["old"]


def test_library_loggers_follow_the_level():
    import logging

    console.set_level("quiet")
    assert logging.getLogger("accelerate").level == logging.ERROR
    console.set_level("verbose")
    assert logging.getLogger("accelerate").level == logging.NOTSET


def test_info_is_silent_when_quiet_and_warnings_always_show(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    console.set_level("quiet")
    console.info("training")
    console.progress_line("step 1/2")
    console.warn("warning: careful")
    assert err.getvalue() == "warning: careful\n"


def test_progress_rewrites_one_line_on_a_terminal(monkeypatch):
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    console.set_level("normal")
    console.progress_line("step 1/2")
    console.progress_line("step 2/2")
    console.warn("warning: w")
    console.end_line()  # nothing left open
    assert err.getvalue() == "\rstep 1/2\x1b[K\rstep 2/2\x1b[K\nwarning: w\n"


def test_progress_is_one_line_per_log_elsewhere(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    console.set_level("normal")
    console.progress_line("step 1/2")
    console.progress_line("step 2/2")
    console.end_line()
    assert err.getvalue() == "step 1/2\nstep 2/2\n"


# ----------------------------------------------------------------------------- progress line


@pytest.mark.parametrize(
    ("logs", "step", "seconds", "done", "expected"),
    [
        ({"loss": 1.2345}, 20, 36.0, 20, "step 20/100  loss 1.234  1.80 s/step  ETA 2m24s"),
        (
            {"loss": 0.01, "reward": 0.625},
            3,
            3.0,
            3,
            "step 3/100  reward 0.625  1.00 s/step  ETA 1m37s",
        ),
        ({"loss": float("nan")}, 1, 0.5, 1, "step 1/100  0.50 s/step  ETA 50s"),
        ({"loss": 2.0}, 10, 40.0, 0, "step 10/100  loss 2"),  # resumed, nothing timed yet
        ({"loss": 2.0}, 1, 3600.0, 1, "step 1/100  loss 2  3600 s/step  ETA 99h00m"),
        ({"eval_loss": 0.5}, 50, 50.0, 50, "step 50/100  eval_loss 0.5  1.00 s/step  ETA 50s"),
    ],
)
def test_progress_text(logs, step, seconds, done, expected):
    from llmscisci_cfg.train.callbacks import progress_text

    assert progress_text(logs, step, 100, seconds, done) == expected


def test_progress_callback_prints_rank0_steps_only(monkeypatch):
    from llmscisci_cfg.train.callbacks import ProgressLine

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    console.set_level("normal")
    callback = ProgressLine()
    state = SimpleNamespace(global_step=0, max_steps=4, is_world_process_zero=True)
    callback.on_train_begin(None, state, None)
    state.global_step = 2
    callback.on_log(None, state, None, logs={"loss": 3.0, "grad_norm": 1.0})
    callback.on_log(None, state, None, logs={"train_runtime": 1.0, "train_loss": 3.0})
    callback.on_log(
        None,
        SimpleNamespace(**{**vars(state), "is_world_process_zero": False}),
        None,
        logs={"loss": 9.0},
    )
    callback.on_train_end(None, state, None)
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("step 2/4  loss 3  ") and "ETA" in lines[0]


# ----------------------------------------------------------------------------- the CLI


def test_quiet_and_verbose_exclude_each_other(cli, tmp_path):
    result = cli("run", tmp_path / "r.yaml", "--quiet", "--verbose")
    assert result.exit_code == 2 and "--quiet and --verbose exclude each other" in result.output


@pytest.mark.parametrize("command", [("run",), ("eval",), ("export",), ("reproduce",)])
def test_help_lists_the_verbosity_options(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "-q, --quiet" in result.output and "-v, --verbose" in result.output


def test_default_level_prints_our_lines_one_per_stage(trained):
    run_dir, output = trained("sft"), trained.output("sft")
    lines = [line for line in output.splitlines() if not line.startswith("warning:")]
    assert lines[0].startswith("sft on builtin:tiny (cpu, 1 process(es)): ")
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split("  ")[0] for line in steps] == ["step 1/2", "step 2/2"]
    assert all("loss " in line and "ETA" in line for line in steps)
    assert lines[-1] == f"run directory: {run_dir}" and len(lines) == 4


def test_quiet_prints_only_the_run_directory_in_process(cli, tmp_path, isolated_cache):
    run_dir = tmp_path / "quiet"
    recipe = write_recipe(tmp_path, "sft")
    result = cli("run", recipe, "--output-dir", run_dir, "--quiet", "--set", "train.max_steps=1")
    assert result.exit_code == 0
    assert result.output.splitlines() == [f"run directory: {run_dir}"]


RUNS = {"default": ("grpo",), "quiet": ("sft", "--quiet"), "verbose": ("grpo", "--verbose")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """``llmscisci run`` of a 2-step tiny recipe at each level, in fresh processes started
    together: {level: (run directory, stdout and stderr as one stream)}."""
    base = tmp_path_factory.mktemp("console")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for key in (console.ENV, "TRANSFORMERS_VERBOSITY", "TOKENIZERS_PARALLELISM"):
        env.pop(key, None)
    started = {}
    for name, (method, *flags) in RUNS.items():
        recipe = write_recipe(base, method)
        run_dir, log = base / f"run_{name}", base / f"{name}.log"
        argv = [sys.executable, "-m", "llmscisci_cfg", "run", str(recipe), "--output-dir"]
        with log.open("wb") as out:  # bytes: text mode would turn a bar's \r into a line break
            process = subprocess.Popen(
                [*argv, str(run_dir), *flags],
                stdout=out,
                stderr=subprocess.STDOUT,  # one stream, in the order a terminal shows it
                cwd=REPO,
                env={**env, "LLMSCISCI_CACHE": str(base / f"cache_{name}")},
            )
        started[name] = (run_dir, log, process)
    done = {}
    for name, (run_dir, log, process) in started.items():
        process.wait(timeout=600)
        output = log.read_bytes().decode()
        assert process.returncode == 0, output
        done[name] = (run_dir, output)
    return done


NOISE = ("{'loss'", "'train_runtime'", "Writing model shards", "FutureWarning", "it/s]", "%|")


@pytest.mark.slow
def test_default_level_prints_one_line_per_stage(runs):
    run_dir, output = runs["default"]
    lines = output.splitlines()
    for noise in NOISE:
        assert noise not in output, noise
    assert lines[0].startswith("grpo on builtin:tiny (cpu, 1 process(es)): ")
    assert [line.split("  ")[0] for line in lines if line.startswith("step ")] == [
        "step 1/2",
        "step 2/2",
    ]
    assert all("reward " in line and "ETA" in line for line in lines if line.startswith("step "))
    assert lines[-1] == f"run directory: {run_dir}"
    assert len([line for line in lines if not line.startswith("warning:")]) <= 5
    card = (run_dir / "final" / "README.md").read_text()
    assert "base_model: builtin:tiny" in card and "- grpo" in card
    assert not (run_dir / "checkpoints" / "README.md").exists()  # TRL's "fine-tuned [None]"


@pytest.mark.slow
def test_quiet_prints_only_the_run_directory(runs):
    run_dir, output = runs["quiet"]
    assert output.splitlines() == [f"run directory: {run_dir}"]


@pytest.mark.slow
def test_verbose_shows_what_the_libraries_print(runs):
    _, output = runs["verbose"]
    for noise in ("{'loss'", "'train_runtime'", "Writing model shards", "FutureWarning"):
        assert noise in output, noise
    assert "step 1/2  reward" not in output  # the libraries' own bar instead of ours


# ----------------------------------------------------------------------------- quickstart


@pytest.mark.slow
def test_quickstart_prints_under_60_lines(tmp_path):
    env = {
        **os.environ,
        "QUICKSTART_DIR": str(tmp_path / "runs"),
        "LLMSCISCI_CACHE": str(tmp_path / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop(console.ENV, None)
    out = subprocess.run(
        ["bash", "scripts/quickstart.sh"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    output = out.stdout.decode()  # not text=True: that turns the bars' \r into line breaks
    assert out.returncode == 0, output
    lines = output.rstrip("\n").split("\n")  # as a terminal shows them: eval's bars redraw in place
    assert len(lines) < 60, output
    for noise in NOISE[:4]:
        assert noise not in output, noise
    assert "format-valid rate on the held-out split:" in lines
    assert lines[-1].startswith("quickstart took ")
