"""The run directory: recognised by our manifest, locked while in use, written with the
umask, and read back the same way by every command when broken (issue 11, classes 1, 3, 8, 9,
12)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.runs import rundir
from llmscisci_cfg.runs.rundir import RunDir, RunLock
from tests.run_helpers import our_manifest, sound_checkpoint


@pytest.mark.parametrize(
    ("content", "ours"),
    [
        ('{"format": "llmscisci.run/1", "status": "completed"}', True),
        (json.dumps({k: 1 for k in ("status", "recipe", "versions", "compiled", "final")}), True),
        ("{}", False),
        ("[]", False),
        ("garbage", False),
        ("", False),
        ('{"status": "completed"}', False),
    ],
)
def test_a_run_directory_is_recognised_by_our_manifest(tmp_path, content, ours):
    (tmp_path / "manifest.json").write_text(content)
    assert rundir.is_run_dir(tmp_path) is ours


def test_prepare_refuses_what_it_must_not_replace(tmp_path):
    run = tmp_path / "run"
    assert rundir.prepare(run, resume=False, overwrite=False) is False
    assert not run.exists()  # nothing is created before the trainer is built
    run.mkdir()
    (run / "manifest.json").write_text(our_manifest())
    (run / "final").mkdir()
    with pytest.raises(UserError, match="not empty; pass --overwrite"):
        rundir.prepare(run, resume=False, overwrite=False)
    assert rundir.prepare(run, resume=False, overwrite=True) is True
    (run / "paper.tex").write_text("mine")
    with pytest.raises(UserError, match=r"did not write \(paper.tex\)"):
        rundir.prepare(run, resume=False, overwrite=True)
    assert (run / "paper.tex").read_text() == "mine" and (run / "final").is_dir()


OLD_RUN = our_manifest(old=True)


def test_replace_swaps_in_an_empty_directory_and_keeps_the_old_run_aside(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "manifest.json").write_text(OLD_RUN)
    aside = rundir.replace(run)
    assert run.is_dir() and list(run.iterdir()) == []
    assert aside == tmp_path / ".run.previous" and (aside / "manifest.json").read_text() == OLD_RUN
    assert rundir.settle_previous(run, aside, failed=False) is None  # the new run completed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


NEW_DONE = our_manifest(status="completed")


@pytest.mark.parametrize("saved", [None, "final only", "completed", "checkpoint"])
def test_a_failed_new_run_gives_the_old_one_back_unless_it_saved(tmp_path, saved):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "manifest.json").write_text(OLD_RUN)
    aside = rundir.replace(run)
    (run / "manifest.json").write_text('{"format": "llmscisci.run/1", "status": "failed"}')
    if saved == "final only":  # a final/ alone may be half written: not enough
        (run / "final").mkdir()
        (run / "final" / "config.json").write_text("{}")
    elif saved == "completed":
        (run / "manifest.json").write_text(NEW_DONE)
    elif saved == "checkpoint":
        sound_checkpoint(run, 1)
    message = rundir.settle_previous(run, aside, failed=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    if saved in (None, "final only"):
        assert "the run it replaced is back" in message
        assert (run / "manifest.json").read_text() == OLD_RUN
    else:
        assert message is None and (run / "manifest.json").read_text() != OLD_RUN


@pytest.mark.parametrize("killed_run_saved", [False, True])
def test_an_aside_left_by_a_killed_launcher(tmp_path, killed_run_saved):
    """A launcher killed before settling left the older run aside and its own start in place:
    the next --overwrite keeps whichever holds something."""
    run, stale = tmp_path / "run", tmp_path / ".run.previous"
    stale.mkdir()
    (stale / "manifest.json").write_text(OLD_RUN)
    run.mkdir()
    (run / "manifest.json").write_text(NEW_DONE if killed_run_saved else our_manifest())
    aside = rundir.replace(run)
    assert aside == stale and list(run.iterdir()) == []
    kept = (aside / "manifest.json").read_text()
    assert kept == (NEW_DONE if killed_run_saved else OLD_RUN)


def test_a_directory_that_is_not_a_run_is_not_kept(tmp_path):
    """What the trainer creates before the replacement (an empty checkpoints/) just goes."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert rundir.replace(run) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and not any(run.iterdir())
    assert rundir.settle_previous(run, None, failed=True) is None
    assert not run.exists()  # made for a run that wrote nothing: removed


def test_a_run_without_final_names_a_kept_previous_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.resolved.yaml").write_text("name: x\n")
    (run / "manifest.json").write_text('{"format": "llmscisci.run/1", "status": "running"}')
    (tmp_path / ".run.previous").mkdir()
    with pytest.raises(UserError, match="the run it replaced is kept in .*\\.run\\.previous"):
        RunDir.open(run).require_final()


def test_symlinked_and_unwritable_run_directories_are_refused(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="dangling symbolic link"):
        rundir.prepare(tmp_path / "dangling", resume=False, overwrite=True)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UserError, match="is a symbolic link"):
        rundir.prepare(tmp_path / "link", resume=False, overwrite=False)
    with pytest.raises(UserError, match="cannot write there"):
        rundir.prepare(__import__("pathlib").Path("/proc/llmscisci-run"), False, False)


@contextlib.contextmanager
def held_by_another_process(run):
    """``run``'s lock, held by a child process (its pid is yielded) until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from llmscisci_cfg.runs.rundir import RunLock\n"
            f"with RunLock(Path({str(run)!r})):\n"
            "    print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path):
    run = tmp_path / "run"
    with held_by_another_process(run) as pid:
        with pytest.raises(UserError, match=f"in use by process {pid}"):
            with RunLock(run):
                pass
    with RunLock(run):  # the OS released the dead holder's lock
        assert (tmp_path / ".run.lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / ".run.lock").exists()


def test_a_second_run_into_a_locked_directory_exits_2(cli, tmp_path):
    from tests.run_helpers import write_recipe

    recipe = write_recipe(tmp_path, "sft", steps=1)
    with RunLock(tmp_path / "run"):
        result = cli("run", recipe, "--output-dir", tmp_path / "run")
    assert result.exit_code == 2 and f"in use by process {os.getpid()}" in result.output


def test_written_files_follow_the_umask(tmp_path):
    from llmscisci_cfg.data.table import write_table

    old = os.umask(0o022)
    try:
        rundir.write_json(tmp_path / "manifest.json", {"a": 1})
        rundir.write_atomic(tmp_path / "recipe.resolved.yaml", "x: 1\n")
        for name in ("out.csv", "out.jsonl", "out.parquet"):  # predict's tables
            write_table(tmp_path / name, [{"a": 1}])
        (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
        (tmp_path / "metrics.jsonl").chmod(0o600)
        rundir.truncate_metrics(tmp_path, 1)  # what a resume does to metrics.jsonl
    finally:
        os.umask(old)
    names = ["manifest.json", "recipe.resolved.yaml", "metrics.jsonl"]
    for name in names + ["out.csv", "out.jsonl", "out.parquet"]:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_metrics_with_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in rundir.read_metrics(tmp_path)] == [1, 2]
    rundir.truncate_metrics(tmp_path, 2)  # what resume does: the torn line is repaired
    assert path.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(UserError, match="metrics.jsonl:2: not a JSON object"):
        rundir.read_metrics(tmp_path)


def test_a_checkpoint_with_a_broken_trainer_state_is_passed_over(tmp_path):
    for step in (2, 4, 6):
        sound_checkpoint(tmp_path, step)
    (tmp_path / "checkpoints" / "checkpoint-6" / "trainer_state.json").write_text("{garbage")
    assert rundir.last_checkpoint(tmp_path).name == "checkpoint-4"
    assert rundir.checkpoint_step(tmp_path / "checkpoints" / "checkpoint-6") is None


BROKEN_MANIFESTS = ["", "garbage", "[1, 2]", '"a string"', '{"status": "completed"}']


@pytest.mark.parametrize("content", BROKEN_MANIFESTS)
@pytest.mark.parametrize("command", ["export", "reproduce", "eval", "resume"])
def test_broken_run_directories_read_the_same_everywhere(cli, tmp_path, content, command):
    """export, reproduce, eval and run --resume: exit 2 with the file named, never a traceback."""
    from tests.run_helpers import write_recipe

    recipe = write_recipe(tmp_path, "sft", steps=1)
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    sound_checkpoint(run, 1)
    (run / "recipe.resolved.yaml").write_text(recipe.read_text())
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    (run / "manifest.json").write_text(content)
    args = {
        "export": ("export", run, "--merge"),
        "reproduce": ("reproduce", run),
        "eval": ("eval", run),
        "resume": ("run", recipe, "--output-dir", run, "--resume"),
    }[command]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "manifest" in result.output or "run directory" in result.output


def test_a_run_without_final_says_how_to_get_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.resolved.yaml").write_text("name: x\n")
    (run / "manifest.json").write_text('{"format": "llmscisci.run/1", "status": "completed"}')
    with pytest.raises(UserError, match="no final/ model .*run it again"):
        RunDir.open(run).require_final()
    sound_checkpoint(run, 2)
    with pytest.raises(UserError, match="no final/ model .*run it again"):  # completed: no resume
        RunDir.open(run).require_final()
    (run / "manifest.json").write_text('{"format": "llmscisci.run/1", "status": "interrupted"}')
    with pytest.raises(UserError, match="resume it with"):
        RunDir.open(run).require_final()
    (run / "manifest.json").write_text('{"format": "llmscisci.run/1", "status": "running"}')
    with pytest.raises(UserError, match="resume it with"):  # marked running, but nobody is
        RunDir.open(run).require_final()
    with RunLock(run):
        with pytest.raises(UserError, match=f"still training \\(process {os.getpid()}\\)"):
            RunDir.open(run).require_final()


def test_the_lock_is_released_even_when_the_body_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with RunLock(tmp_path / "run"):
            raise RuntimeError("boom")
    started = time.perf_counter()
    with RunLock(tmp_path / "run"):
        pass
    assert time.perf_counter() - started < 1


def _scaffold(tmp_path, manifest: str, resolved: str | None = None):
    from tests.run_helpers import write_recipe

    recipe = write_recipe(tmp_path, "sft", steps=1)
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")  # something there, not a loadable model
    sound_checkpoint(run, 1)
    (run / "recipe.resolved.yaml").write_text(resolved or recipe.read_text())
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    (run / "manifest.json").write_text(manifest)
    return recipe, run


COMMANDS = {
    "export": lambda recipe, run: ("export", run, "--merge"),
    "reproduce": lambda recipe, run: ("reproduce", run),
    "eval": lambda recipe, run: ("eval", run),
    "resume": lambda recipe, run: ("run", recipe, "--output-dir", run, "--resume"),
}


@pytest.mark.parametrize("command", ["export", "eval"])
def test_our_manifest_without_its_final_entry_is_exit_2(cli, tmp_path, command):
    recipe, run = _scaffold(tmp_path, '{"format": "llmscisci.run/1", "status": "completed"}')
    result = cli(*COMMANDS[command](recipe, run))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "final" in result.output, result.output


@pytest.mark.parametrize("command", ["reproduce", "eval"])
def test_a_corrupt_resolved_recipe_is_exit_2_naming_it(cli, tmp_path, command):
    manifest = json.dumps(
        {"format": "llmscisci.run/1", "status": "completed", "final": {"kind": "full"}}
    )
    recipe, run = _scaffold(tmp_path, manifest, resolved="name: [unclosed\n")
    result = cli(*COMMANDS[command](recipe, run))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "recipe.resolved.yaml:" in result.output


@pytest.mark.parametrize("command", ["export", "eval", "resume"])
def test_a_run_in_use_is_refused_by_every_writer(cli, tmp_path, command):
    manifest = json.dumps({"format": "llmscisci.run/1", "status": "interrupted"})
    recipe, run = _scaffold(tmp_path, manifest)
    with held_by_another_process(run) as pid:
        result = cli(*COMMANDS[command](recipe, run))
    assert result.exit_code == 2, result.output
    assert f"in use by process {pid}" in result.output


# ----------------------------------------------------------------------------- issue 21


def _users_files(run):
    """What the issue's user kept in their run directory."""
    (run / "eval").mkdir(parents=True, exist_ok=True)
    (run / "plots").mkdir(exist_ok=True)
    (run / "eval" / "notes.txt").write_text("my notes")
    (run / "plots" / "thesis.tex").write_text("\\chapter{Results}")


FORGED = {
    "legacy keys": json.dumps(
        {k: 1 for k in ("status", "recipe", "versions", "compiled", "final")}
    ),
    "format only": '{"format": "llmscisci.run/1"}',
    "inventory not a list": json.dumps({"format": "llmscisci.run/1", "inventory": "eval/"}),
    "inventory without the manifest": json.dumps(
        {"format": "llmscisci.run/1", "inventory": ["eval/"]}
    ),
    "inventory escaping": json.dumps(
        {"format": "llmscisci.run/1", "inventory": ["manifest.json", "../eval/"]}
    ),
}


@pytest.mark.parametrize("manifest", list(FORGED))
def test_overwrite_never_deletes_under_a_manifest_without_a_valid_inventory(tmp_path, manifest):
    """Issue 21: our keys (any values) or a forged format marker deleted eval/notes.txt and
    plots/thesis.tex; a manifest without a valid inventory now lets nothing be deleted."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(FORGED[manifest])
    _users_files(run)
    for attempt in (lambda: rundir.prepare(run, False, True), lambda: rundir.replace(run)):
        with pytest.raises(UserError, match="lists no inventory|not a run directory"):
            attempt()
    assert (run / "eval" / "notes.txt").read_text() == "my notes"
    assert (run / "plots" / "thesis.tex").read_text() == "\\chapter{Results}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_overwrite_names_every_file_the_inventory_does_not_list(tmp_path):
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "manifest.json").write_text(our_manifest())
    (run / "plots" / "loss.png").write_bytes(b"png")
    (run / "final" / "sub").mkdir(parents=True)
    (run / "final" / "sub" / "model.safetensors").write_bytes(b"x")  # final/ is the run's
    (run / ".manifest.json.ab12cd34.tmp").write_text("{")  # our interrupted atomic write
    (run / "checkpoints").mkdir()
    assert rundir.prepare(run, False, True) is True
    _users_files(run)
    (run / "mine" / "deep").mkdir(parents=True)
    (run / "mine" / "deep" / "a.txt").write_text("a")
    (run / "data").symlink_to(tmp_path)  # a link is never ours, and never followed
    (run / ".thesis.tex.ab12cd34.tmp").write_text("not beside a file we list")
    found = rundir.foreign_entries(run, rundir.run_inventory())
    expected = [".thesis.tex.ab12cd34.tmp", "data", "eval/", "mine/", "plots/thesis.tex"]
    assert found == expected
    with pytest.raises(UserError, match=r"did not write \(\.thesis.*plots/thesis\.tex\)"):
        rundir.prepare(run, False, True)
    with pytest.raises(UserError, match="did not write"):
        rundir.replace(run)
    assert (run / "eval" / "notes.txt").is_file() and (run / "mine" / "deep" / "a.txt").is_file()
    assert not rundir.previous_run(run).exists()


def test_what_eval_and_export_claim_joins_the_inventory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(our_manifest())
    _users_files(run)
    rundir.claim(run, ["eval/notes.txt", "./exported/", "plots/../plots/thesis.tex", "../x", ""])
    listed = rundir.inventory(json.loads((run / "manifest.json").read_text()))
    assert listed[-3:] == ["eval/notes.txt", "exported/", "plots/thesis.tex"]
    assert rundir.prepare(run, False, True) is True
    (run / "manifest.json").write_text(FORGED["format only"])
    rundir.claim(run, ["eval/notes.txt"])  # a manifest without an inventory is not given one
    assert json.loads((run / "manifest.json").read_text()) == {"format": "llmscisci.run/1"}


def _weights(path, n=64):
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.arange(n, dtype=np.float32)}, str(path))


def _zip(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:  # what torch.save writes: a zip archive
        z.writestr("archive/data.pkl", b"x" * 200)


DAMAGE = {
    "truncated weights": ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:100])),
    "corrupt resume state": ("llmscisci_state.json", lambda p: p.write_text('{"tr_loss": 0.')),
    "resume state missing a key": ("llmscisci_state.json", lambda p: p.write_text("{}")),
    "missing resume state": ("llmscisci_state.json", lambda p: p.unlink()),
    "truncated optimizer": ("optimizer.pt", lambda p: p.write_bytes(p.read_bytes()[:50])),
    "corrupt config": ("config.json", lambda p: p.write_text('{"model_type": ')),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_named_and_passed_over(tmp_path, damage):
    for step in (1, 2):
        path = sound_checkpoint(tmp_path, step)
        _weights(path / "model.safetensors")
        _zip(path / "optimizer.pt")
        (path / "config.json").write_text('{"model_type": "llama"}')
        assert rundir.checkpoint_damage(path) is None
    name, damage_it = DAMAGE[damage]
    newest = tmp_path / "checkpoints" / "checkpoint-2"
    damage_it(newest / name)
    assert rundir.checkpoint_damage(newest).startswith(name)
    assert rundir.last_checkpoint(tmp_path).name == "checkpoint-1"
    start, damaged = rundir.resume_checkpoint(tmp_path)
    assert start.name == "checkpoint-1" and damaged[0].startswith(f"checkpoint-2: {name} ")
    assert rundir.set_aside_damaged(tmp_path, start) == [
        tmp_path / "checkpoints" / "damaged-checkpoint-2"
    ]
    assert [p.name for p in rundir.checkpoints(tmp_path)] == ["checkpoint-1"]
    damage_it(tmp_path / "checkpoints" / "checkpoint-1" / name)
    with pytest.raises(
        UserError, match=f"no checkpoint can be resumed from \\(checkpoint-1: {name}"
    ):
        rundir.resume_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("umask", "file", "folder"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_plain_modes_follow_the_umask(tmp_path, umask, file, folder):
    """What safetensors (0600) and mkdtemp (0700) leave gets what a plain open/mkdir gives."""
    (tmp_path / "m" / "sub").mkdir(parents=True)
    _weights(tmp_path / "m" / "model.safetensors")
    (tmp_path / "m" / "sub" / "a.json").write_text("{}")
    (tmp_path / "m" / "run.sh").write_text("")
    os.chmod(tmp_path / "m" / "sub" / "a.json", 0o600)
    os.chmod(tmp_path / "m" / "sub", 0o700)
    os.chmod(tmp_path / "m" / "run.sh", 0o700)
    (tmp_path / "m" / "link").symlink_to(tmp_path / "elsewhere")
    old = os.umask(umask)
    try:
        rundir.plain_modes(tmp_path / "m")
    finally:
        os.umask(old)
    mode = lambda *p: tmp_path.joinpath("m", *p).stat().st_mode & 0o777  # noqa: E731
    assert mode("model.safetensors") == mode("sub", "a.json") == file
    assert mode("sub") == folder
    assert mode("run.sh") == file | (0o111 & ~umask)  # an executable stays executable


def test_giving_the_old_run_back_leaves_a_users_folder_beside_it_alone(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "manifest.json").write_text(OLD_RUN)
    (tmp_path / ".run.failed").mkdir()  # the name the new run used to be moved to
    (tmp_path / ".run.failed" / "keep.txt").write_text("mine")
    aside = rundir.replace(run)
    (run / "manifest.json").write_text(our_manifest(status="failed"))
    assert "is back in its place" in rundir.settle_previous(run, aside, failed=True)
    assert (run / "manifest.json").read_text() == OLD_RUN
    assert (tmp_path / ".run.failed" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.failed", "run"]
