"""Small helpers shared by the data-stage tests: write a recipe next to in-test data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from llmscisci_cfg.recipe.loader import load_job
from llmscisci_cfg.recipe.resolve import Job


def build_dataset(job: Job, **kwargs):
    """`data.preprocess.build_dataset` of ``job`` with its own method's rows
    (`train.methods.get(job.method)`), as every caller in the package passes them."""
    from llmscisci_cfg.data.preprocess import build_dataset as build
    from llmscisci_cfg.train import methods

    return build(job, methods.get(job.method), **kwargs)


FIELDS = [
    "doi",
    "title",
    "easy",
    "difficult",
    "y_easy_gpt4",
    "y_diff_gpt4",
    "easy_gpt_response",
    "easy_llama3_response",
    "difficult_gpt_response",
    "difficult_llama3_response",
]


def answer(label: str, why: str = "reason") -> str:
    return f"<think>\n{why}\n</think>\n<label>\n{label}\n</label>"


def report(
    i: int,
    easy: str = "",
    difficult: str = "",
    y_easy: str = "[1, 0, 0, 0, 0]",
    y_diff: str = "[0, 0, 0, 0, 1]",
) -> dict[str, str]:
    """One ReScience-schema row; answers differ so DPO pairs are kept."""
    return {
        "doi": f"10.1/doc.{i:03d}",
        "title": f"Report {i}",
        "easy": easy if easy is not None else "",
        "difficult": difficult,
        "y_easy_gpt4": y_easy,
        "y_diff_gpt4": y_diff,
        "easy_gpt_response": answer(y_easy, "gpt"),
        "easy_llama3_response": answer("[0, 0, 0, 0, 1]", "llama"),
        "difficult_gpt_response": answer(y_diff, "gpt"),
        "difficult_llama3_response": answer("[1, 0, 0, 0, 0]", "llama"),
    }


def reports(n: int) -> list[dict[str, str]]:
    """``n`` reports with both sections filled, text length growing with the index."""
    return [
        report(i, easy=f"Easy part {i}. " + "code " * i, difficult=f"Hard part {i}. " + "math " * i)
        for i in range(n)
    ]


def write_csv(path: Path, rows: list[dict[str, str]], fields: list[str] | None = None) -> Path:
    fields = fields or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


LABELS = {"easy": "y_easy_gpt4", "difficult": "y_diff_gpt4"}
CHOSEN = {"easy": "easy_gpt_response", "difficult": "difficult_gpt_response"}
REJECTED = {"easy": "easy_llama3_response", "difficult": "difficult_llama3_response"}


def make_job(
    tmp_path: Path, path: str, method: str = "grpo", overrides: tuple[str, ...] = (), **data
) -> Job:
    """A minimal recipe file in ``tmp_path`` (builtin:tiny model, cache inside tmp_path), loaded."""
    body: dict = {
        "name": "t",
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"source": {"path": path}, "cache_dir": "cache", **data},
        "method": {"name": method},
    }
    if method == "grpo":
        body["rewards"] = [{"name": "format"}]
    if method == "sft":
        body["data"].setdefault("columns", {}).setdefault("label", LABELS)
    if method == "dpo":
        cols = body["data"].setdefault("columns", {})
        cols.setdefault("chosen", CHOSEN)
        cols.setdefault("rejected", REJECTED)
    if method == "kto":  # every answer column, scored against gold
        body["data"].setdefault("columns", {}).setdefault("label", LABELS)
        body["method"]["answers"] = {a: [CHOSEN[a], REJECTED[a]] for a in LABELS}
    file = tmp_path / "recipe.yaml"
    file.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return load_job(file, overrides)


#: The pinned constraints of issue 14: category 5 alone, and never the all-zero answer.
STRICT = "constraints: {exclusive: [5], min_positive: 1}\n"


def constrained_task(directory: Path, constraints: str = STRICT, name: str = "strict.yaml") -> Path:
    """A copy of the shipped repro_effort task with its ``constraints`` line replaced by
    ``constraints`` (a YAML line, at the end of the file; empty: none)."""
    text = plain_task_text(directory)
    path = directory / name
    path.write_text(text + "\n" + constraints, encoding="utf-8")
    return path


def plain_task_text(directory: Path) -> str:
    """The shipped repro_effort task's text without its label constraints."""
    from llmscisci_cfg.resources import task_file

    text = task_file("builtin:repro_effort", directory).read_text(encoding="utf-8")
    kept = [line for line in text.splitlines() if not line.startswith("constraints:")]
    return "\n".join(kept) + "\n"


def kind_task(
    directory: Path,
    answer_kind: str,
    categories: list[str],
    aspect: str = "text",
    text_column: str = "text",
    levels: list[str] | None = None,
    name: str = "kinds.yaml",
) -> Path:
    """A one-aspect label task file answered as ``answer_kind`` (single, multi, dimensions)."""
    task = {
        "name": f"t_{answer_kind}",
        "answer": answer_kind,
        "aspects": {
            aspect: {
                "text_column": text_column,
                "title": "Text",
                "question": "Which categories apply?",
                "categories": categories,
            }
        },
        "system_prompt": "Think inside <think> </think>, then answer inside <label> </label>, "
        "e.g. <label> {{ example_label }} </label>.",
        "user_prompt": "{{ question }}\n{% for c in categories %}{{ loop.index }}. {{ c }}\n"
        "{% endfor %}<text>\n{{ text }}\n</text>",
    }
    if levels is not None:
        task["levels"] = levels
    path = directory / name
    path.write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
    return path


def write_recipe(directory: Path, data: dict, method: str = "grpo", **sections) -> Path:
    """A recipe file in ``directory`` on the tiny model with the given ``data`` section."""
    body: dict = {
        "name": "t",
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"cache_dir": "cache", **data},
        "method": {"name": method},
        **sections,
    }
    if method == "grpo" and "rewards" not in sections:
        body["rewards"] = [{"name": "format"}]
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path
