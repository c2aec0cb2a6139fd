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
    help="Show N rendered train examples with the loss mask visible and, with data.clean, "
    "up to 5 sections before and after cleaning.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def preprocess(recipe: str, overrides: tuple[str, ...], preview: int, as_json: bool) -> None:
    """Build and cache the dataset of RECIPE; print rows read, examples, drops and splits
    (per split: its file, rows, examples, drops), how a labels table matched (data.labels),
    the labels that could not be read, what the length filter dropped or truncated per split
    and aspect, what data.clean changed per aspect, and two sha256 of the test set: of its
    rows, and of the prompts the model reads.

    The cache key covers the data files' contents (not how their paths are written), the data
    section, the method, the task, the tokenizer and the chat template; a second run loads
    from the cache.
    """
    from llmscisci_cfg.data.preprocess import build_dataset, preview_conversations
    from llmscisci_cfg.models import chat
    from llmscisci_cfg.recipe.loader import load_job
    from llmscisci_cfg.train import methods

    job = load_job(recipe, overrides)
    rows = methods.get(job.method)
    tokenizer = job.tokenizer()
    dataset, report = build_dataset(job, rows, tokenizer=tokenizer)
    samples = report.clean_samples[:preview]
    if as_json:
        extra = {"clean_preview": samples} if preview and job.recipe.data.clean is not None else {}
        click.echo(json.dumps(report.summary() | extra))
    else:
        click.echo(format_report(report, prompt_only=not rows.answer_columns))
        for sample in samples:
            click.echo(format_clean_sample(sample))
    for title, messages in preview_conversations(dataset, rows, preview):
        click.echo(f"\n--- {title} " + "-" * max(0, 60 - len(title)), err=as_json)
        click.echo(chat.preview(tokenizer, messages), err=as_json)


def format_report(report, prompt_only: bool = False) -> str:
    """The human-readable summary printed by ``preprocess`` (``prompt_only``: the method has
    no answers in its data, so the length filter measured prompts only)."""
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
    for name, counts in report.method_counts.items():
        lines.append(f"{name + ':':<15}" + ", ".join(f"{n} {key}" for key, n in counts.items()))
    limits = report.length_limits
    if limits:
        shown = [
            f"prompt <= {limits['prompt']}" if limits.get("prompt") is not None else "",
            f"prompt+answer <= {limits['total']}" if limits.get("total") is not None else "",
        ]
        text = ", ".join(s for s in shown if s) or "none"
        lines.append(
            f"token limits:  {text}"
            + (" (prompt only: the policy writes the answers)" if prompt_only else "")
        )
    lines += _split_lines(report.per_split, report.split_by)
    lines += _label_lines(report.labels, report.bad_labels, report.dropped)
    lines += _length_lines(report.length, report.test_excluded)
    lines += _cleaning_lines(report.cleaning)
    if report.test_set_sha256:
        lines.append(f"test set:      sha256 {report.test_set_sha256} (rows as read and cleaned)")
    if report.test_prompts_sha256:
        lines.append(
            f"test prompts:  sha256 {report.test_prompts_sha256} (what the model reads, "
            "after truncation)"
        )
    if report.cache_path:
        lines.append(
            f"cache:         {'hit' if report.cache_hit else 'written'} {report.cache_path}"
        )
    return "\n".join(lines)


def _split_lines(per_split: dict, split_by: str) -> list[str]:
    """Per split: its file (split files), rows read, examples and drops."""
    if not per_split:
        return []
    how = "split files" if split_by == "files" else "split by document id"
    lines = [f"per split:     ({how})"]
    for name, entry in per_split.items():
        drops = ", ".join(f"{n} {r}" for r, n in entry.get("dropped", {}).items()) or "none"
        file = f"{entry['file']}: " if entry.get("file") else ""
        lines.append(
            f"  {name + ':':<12}{file}{entry['rows']} rows, {entry['examples']} examples "
            f"({entry['documents']} documents), dropped {drops}"
        )
    return lines


def _label_lines(labels: dict, bad: list, dropped: dict) -> list[str]:
    """data.labels: how the rows and the labels table matched; the labels that could not be
    read (each one counted as bad_label)."""
    lines = []
    if labels:
        lines.append(
            f"labels join:   {labels['matched']} of {labels['labels']} label rows matched; "
            f"{labels['labels_without_row']} labels without a row, "
            f"{labels['rows_without_label']} row ids without a label (left out, no_label)"
        )
        for key in ("first_labels_without_row", "first_rows_without_label"):
            if labels.get(key):
                what = key.removeprefix("first_").replace("_", " ")
                lines.append(f"  {what}: {', '.join(labels[key])}")
    if bad:
        lines.append(
            f"bad labels:    {dropped.get('bad_label', len(bad))} (first {len(bad)} below)"
        )
        lines += [f"  {where}: id {doc} ({aspect}): {why}" for doc, aspect, where, why in bad]
    return lines


def _length_lines(length: dict, excluded: list) -> list[str]:
    """Per split and aspect, the examples the length filter dropped (by reason) or truncated."""
    if not length:
        return []
    lines = [f"length filter: {length['strategy']}"]
    for split, per_aspect in length["splits"].items():
        parts = [
            f"{aspect} " + (", ".join(f"{n} {what}" for what, n in counts.items()) or "none")
            for aspect, counts in per_aspect.items()
        ]
        lines.append(f"  {split + ':':<12}{'; '.join(parts) or 'no examples'}")
    if excluded:
        shown = ", ".join(f"{doc} ({aspect})" for doc, aspect, _ in excluded[:5])
        more = f" and {len(excluded) - 5} more" if len(excluded) > 5 else ""
        lines.append(f"  test examples excluded for length: {shown}{more}")
    return lines


def _cleaning_lines(cleaning: dict) -> list[str]:
    """Per aspect, what data.clean changed."""
    if not cleaning:
        return []
    lines = ["cleaning:"]
    for aspect, c in cleaning.items():
        lines.append(
            f"  {aspect + ':':<12}{c['changed']} of {c['sections']} sections changed, "
            f"characters {c['chars_in']} -> {c['chars_out']} ({c['cut_chars']} cut at a heading, "
            f"{c['boilerplate_lines']} boilerplate lines, {c['hyphens_joined']} hyphens joined "
            f"and {c['hyphens_glued']} glued, {c['unicode_chars']} unicode characters)"
        )
    return lines


def format_clean_sample(sample: dict) -> str:
    """One section before and after cleaning (start and end of each), with what changed."""
    changes = ", ".join(f"{n} {k}" for k, n in sample["changes"].items()) or "whitespace"
    before, after = sample["chars"]
    title = f"clean: {sample['id']} / {sample['aspect']}"
    return "\n".join(
        [
            f"\n--- {title} " + "-" * max(0, 60 - len(title)),
            f"{before} -> {after} characters: {changes}",
            f"before: {sample['before']}",
            f"after:  {sample['after']}",
        ]
    )
