"""``llmscisci preprocess``: build and cache a recipe's dataset, print what happened.

Imports only click at top level; the data stack loads when the command runs.
"""

from __future__ import annotations

import json

import click

from llmscisci_cfg.cli.common import set_option


def register(group: click.Group) -> None:
    """Add the data commands to the ``llmscisci`` group."""
    group.add_command(preprocess)


@click.command()
@click.argument("recipe")
@set_option
@click.option(
    "--preview",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Show N rendered train examples with the loss mask visible.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def preprocess(recipe: str, overrides: tuple[str, ...], preview: int, as_json: bool) -> None:
    """Build and cache the dataset of RECIPE; print rows read, examples, drops and splits.

    The cache key covers the source file's content, the data section, the method, the task,
    the tokenizer and the chat template; a second run loads from the cache.
    """
    from llmscisci_cfg.data.preprocess import build_dataset, preview_conversations
    from llmscisci_cfg.models import chat
    from llmscisci_cfg.models.load import load_tokenizer
    from llmscisci_cfg.recipe.loader import load_job

    job = load_job(recipe, overrides)
    tokenizer = load_tokenizer(job)
    dataset, report = build_dataset(job, tokenizer=tokenizer)
    if as_json:
        click.echo(json.dumps(report.summary()))
    else:
        click.echo(format_report(report, job.method))
    for title, messages in preview_conversations(dataset, job.method, preview):
        click.echo(f"\n--- {title} " + "-" * max(0, 60 - len(title)), err=as_json)
        click.echo(chat.preview(tokenizer, messages), err=as_json)


def format_report(report, method: str) -> str:
    """The human-readable summary printed by ``preprocess``."""
    dropped = ", ".join(f"{n} {reason}" for reason, n in report.dropped.items()) or "none"
    splits = ", ".join(f"{name} {n}" for name, n in report.splits.items())
    docs = ", ".join(f"{name} {n}" for name, n in report.documents.items())
    lines = [
        f"rows read:     {report.rows}",
        f"examples:      {report.examples}",
        f"dropped:       {dropped}",
        f"splits:        {splits} (documents: {docs})",
        f"group overlap: {report.group_overlap}",
    ]
    if report.traces:
        lines.append(
            f"traces:        {report.traces['with_trace']} examples with a trace, "
            f"{report.traces['without_trace']} without"
        )
    limits = report.length_limits
    if limits:
        shown = [
            f"prompt <= {limits['prompt']}" if limits.get("prompt") is not None else "",
            f"prompt+answer <= {limits['total']}" if limits.get("total") is not None else "",
        ]
        text = ", ".join(s for s in shown if s) or "none"
        lines.append(
            f"token limits:  {text}" + (" (grpo: prompt only)" if method == "grpo" else "")
        )
    if report.cache_path:
        lines.append(
            f"cache:         {'hit' if report.cache_hit else 'written'} {report.cache_path}"
        )
    return "\n".join(lines)
