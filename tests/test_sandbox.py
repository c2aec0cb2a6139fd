"""Templates from someone else's recipe: bounded time and size in the task sandbox, and chat
templates checked at validate (issue 11, classes 5 and 7)."""

from __future__ import annotations

import resource
import time

import pytest

from llmscisci_cfg import sandbox
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models import chat
from tests.conftest import RECIPES

QUICK = RECIPES / "quickstart" / "grpo_tiny.yaml"
SFT = RECIPES / "quickstart" / "sft_tiny.yaml"

RUNAWAY = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'a' * 10**9 }}",
    "{{ ['a'] * 10**9 }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a'|center(10**9) }}",
    "{{ '{:>100000000}'.format('a') }}",
    "{{ '%100000000s' % 'a' }}",
    "{{ '%100000000s'|format('a') }}",
    "{{ (10**100) ** (10**100) }}",
    "{% set s = namespace(x='a') %}{% for i in range(100000) %}{% set s.x = s.x ~ s.x %}{% endfor %}",
    "{{ ('\t' * 1000).expandtabs(1000000) }}",
    "{{ 'aaaa'.replace('', 'b' * 1000000) }}",
    "{{ range(100000)|join('x' * 100000) }}",
    "{{ 'x'.join(['y'] * 100000) * 100 }}",
]


@pytest.mark.parametrize("source", RUNAWAY)
def test_runaway_templates_stop_within_the_budget(source):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(sandbox.TemplateBudgetError):
        sandbox.render(source, {})
    assert time.perf_counter() - started < sandbox.TIME_LIMIT + 2
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grown_mib < 200  # the gigabyte values were never built


def test_ordinary_templates_render_as_before():
    assert sandbox.render("{{ 'ab' * 3 }}-{{ 2 ** 10 }}-{{ '%5s'|format('x') }}", {}) == (
        "ababab-1024-    x"
    )
    text = "x" * 300_000  # a long section is fine
    assert sandbox.render("{{ text|length }}", {"text": text}) == "300000"


def test_the_budget_restores_the_previous_tracer():
    import sys

    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)
    try:
        sandbox.render("{{ 1 }}", {})
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)


@pytest.mark.parametrize("source", RUNAWAY[:2])
def test_task_prompts_that_run_away_fail_validate(cli, tmp_path, source):
    result = cli(
        "validate", QUICK, "--set", f"data.task_overrides.user_prompt={source}{{{{ text }}}}"
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "data.task_overrides.user_prompt" in result.output


CHAT_FAILURES = [
    ("{% for m in messages %}{{ m.content }}", "fails to render (template line 1)"),
    ("{{ 1/0 }}{% for m in messages %}{{ m.content }}{% endfor %}", "ZeroDivisionError"),
    (RUNAWAY[0] + "{% for m in messages %}{{ m.content }}{% endfor %}", "more than 2 s"),
    ("{{ 'a' * 10**9 }}{% for m in messages %}{{ m.content }}{% endfor %}", "too large"),
    ("root:x:0:0:root:/root:/bin/bash\n", "does not show the messages' contents"),
]


@pytest.mark.parametrize(("source", "needle"), CHAT_FAILURES)
def test_chat_templates_are_checked_at_validate(cli, tmp_path, source, needle):
    (tmp_path / "chat.jinja").write_text(source)
    result = cli("validate", QUICK, "--set", f"template.file={tmp_path / 'chat.jinja'}")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "template.file" in result.output and needle in result.output
    assert "root:x:0:0" not in result.output  # the file's content is not echoed


def test_assistant_only_loss_needs_generation_markers(cli, tmp_path):
    (tmp_path / "plain.jinja").write_text(
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    sets = ("--set", f"template.file={tmp_path / 'plain.jinja'}")
    result = cli("validate", SFT, *sets)
    assert result.exit_code == 2 and "{% generation %}" in result.output
    ok = cli("validate", SFT, *sets, "--set", "method.assistant_only_loss=false")
    assert ok.exit_code == 0, ok.output


def test_shipped_templates_pass_the_check():
    for name in chat.SHIPPED:
        assert chat.template_problems(chat.shipped_template(name), assistant_only_loss=True) == []


def test_transformers_rendering_is_bounded_too():
    """A tokenizer whose own template loops is stopped when we render through transformers."""
    from llmscisci_cfg.models.tiny import load_tiny_tokenizer

    tokenizer = load_tiny_tokenizer()
    tokenizer.chat_template = RUNAWAY[0]
    started = time.perf_counter()
    with pytest.raises(UserError, match="chat template"):
        chat.render(tokenizer, [{"role": "user", "content": "hi"}])
    assert time.perf_counter() - started < sandbox.TIME_LIMIT + 2


@pytest.mark.parametrize("source", RUNAWAY[:2])
def test_a_task_file_whose_prompt_runs_away_fails_validate(cli, tmp_path, source):
    """The same bound for prompts written in a task file, not only in task_overrides."""
    from llmscisci_cfg.resources import root

    text = (root("assets") / "tasks" / "repro_effort.yaml").read_text()
    task = tmp_path / "task.yaml"
    task.write_text(text.replace("user_prompt: |\n", f"user_prompt: |\n  {source}\n", 1))
    started = time.perf_counter()
    result = cli("validate", QUICK, "--set", f"data.task={task}")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "data.task" in result.output and time.perf_counter() - started < 30
    assert "more than 2 s" in result.output or "too large" in result.output
