"""`build_dataset`: recipe → the train/test `DatasetDict` every trainer and eval reads, cached.

Steps: load the task, read the source, one example per report per aspect (sections read
and cleaned by `data.clean.section_text`, labels decoded, empty sections counted out), split
the source's document ids (seeded; nothing tokenizer-dependent decides the split), build the
method's rows, drop or truncate over-long examples (a test example is truncated or listed as
excluded, never moved), fingerprint the test set (`held_out_sha256`), save.
The result is exactly what TRL's trainers take: conversational
``prompt``/``completion`` (SFT), ``prompt``/``chosen``/``rejected`` (DPO), ``prompt`` plus the
extra columns ``gold``, ``id`` and ``aspect`` (GRPO rewards get them as keyword arguments).

The cache lives in ``data.cache_dir``, else ``$LLMSCISCI_CACHE``, else ``~/.cache/llmscisci``
(under ``datasets/<key>``). The key covers everything the output depends on; see `cache_key`.
Everything comes from the resolved `Job`: the task as loaded, the column map, and the data
file's sha256 computed once (the same digest the manifest records).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.data.examples import CleanTally, Row, build_rows, collect
from llmscisci_cfg.data.report import BuildReport
from llmscisci_cfg.data.sources import load_source, quiet_datasets, require_columns
from llmscisci_cfg.data.splits import split_documents
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job

if TYPE_CHECKING:
    from datasets import DatasetDict

#: Bump when the built format changes, so old caches are not reused.
CACHE_VERSION = 5  # 5: token_lengths has GRPO's prompt_any
SPLITS = ("train", "test")
_REPORT = "build_report.json"


def build_dataset(
    job: Job, *, use_cache: bool = True, tokenizer=None
) -> tuple[DatasetDict, BuildReport]:
    """The job's train/test dataset and what building it did (from the cache when possible).

    ``tokenizer`` defaults to `models.load.load_tokenizer` (the recipe's chat template); callers
    that already hold it pass it. A predict recipe has no training examples: a `UserError`.
    """
    if job.method == "predict":
        raise UserError(
            f"{job.name}: a predict recipe (method: predict) builds no train/test split; it "
            "reads its table as it is: run `llmscisci predict RECIPE --limit N` for a sample of "
            "its prompts and answers, and `llmscisci agree` to compare its labels with gold"
        )
    if tokenizer is None:
        tokenizer = job.tokenizer()
    key = cache_key(job, tokenizer)
    path = job.cache_root / "datasets" / key[:24]
    pointer = job.cache_root / "index" / lookup_key(job)[:24]
    if use_cache and (path / _REPORT).is_file():
        cached = _load_cached(path)
        if cached is not None:
            _point(pointer, path)
            return cached
    dataset, report = _build(job, tokenizer)
    report.source_sha256, report.cache_key = job.data.sha256, key
    if use_cache:
        try:
            _save(dataset, report, path)
            report.cache_path = str(path)
            _point(pointer, path)
        except OSError as exc:  # an unwritable cache costs a rebuild next time, nothing else
            warnings.warn(f"dataset cache not written to {path}: {exc}", stacklevel=2)
    return dataset, report


def _build(job: Job, tokenizer) -> tuple[DatasetDict, BuildReport]:
    source = load_source(job)
    require_columns(source, job.columns.required())
    tally = CleanTally()
    examples, dropped = collect(source, job, tally)
    data = job.recipe.data
    test_ids = split_documents(document_ids(source, job), data.split.test_fraction, job.split_seed)
    trace_stats: Counter = Counter()
    rows, more = build_rows(job, examples, test_ids, trace_stats)
    dropped += more
    splits: dict[str, list[Row]] = {name: [] for name in SPLITS}
    for row in rows:
        splits["test" if row["id"] in test_ids else "train"].append(row)
    report = BuildReport(rows=len(source.rows), examples=0)
    if data.length_filter is not None:
        from llmscisci_cfg.data.lengthfilter import filter_splits, token_measure

        spec = data.length_filter
        found = filter_splits(
            splits, spec, job.method, token_measure(tokenizer), fit_section(job, tokenizer)
        )
        splits, dropped = found.kept, dropped + found.dropped
        report.length_limits = {"prompt": found.limits.prompt, "total": found.limits.total}
        report.length = {
            "strategy": spec.strategy
            + (f" ({spec.truncate})" if spec.strategy == "truncate" else ""),
            "splits": {n: {a: dict(c) for a, c in per.items()} for n, per in found.counts.items()},
        }
        report.test_excluded = [list(x) for x in found.excluded.get("test", [])]
    report.token_lengths = longest(splits["train"], job.method, tokenizer)
    if job.method == "grpo":  # rollouts of the test split too (eval): what sizes a KV cache
        test = longest(splits["test"], job.method, tokenizer)["prompt"]
        report.token_lengths["prompt_any"] = max(report.token_lengths["prompt"] or 0, test or 0)
    dataset = _to_datasetdict(splits, job.method)
    _fill_report(report, splits, dropped)
    report.test_set_sha256 = held_out_sha256(splits["test"])
    if job.recipe.data.clean is not None:
        report.cleaning, report.clean_samples = tally.counts, tally.samples
    if job.recipe.data.traces is not None and job.method == "sft":
        report.traces = {k: trace_stats[k] for k in ("with_trace", "without_trace")}
    return dataset, report


def longest(rows: list[Row], method: str, tokenizer) -> dict[str, int | None]:
    """The longest prompt and prompt + answer (None for GRPO) of ``rows`` in tokens, as the
    trainer will see them: what pads a batch, so what `plan`'s memory estimate needs."""
    from llmscisci_cfg.data.lengthfilter import lengths, token_measure

    prompt, total = lengths(rows, method, token_measure(tokenizer))
    return {
        "prompt": max(prompt, default=None),
        "total": max(total, default=None) if total else None,
    }


def document_ids(source, job: Job) -> list[str]:
    """Every non-empty document id of the source: what the split shuffles, so the split depends
    only on the file, the fraction and the seed (not on aspects, labels, cleaning or tokens)."""
    ids = (str(v).strip() for v in source.rows[job.columns.id] if v is not None)
    return [i for i in ids if i]


def held_out_sha256(rows: list[Row]) -> str:
    """sha256 naming a test set: over its examples sorted by (id, aspect), each as JSON
    ``[id, aspect, gold, sha256 of the section text]``, the text as read and cleaned, before
    any truncation. Two evaluations with the same value scored the same documents, aspects,
    gold labels and texts; prompts, models and tokenizers may differ. A test example the
    length filter dropped is not in it.
    """
    from llmscisci_cfg.digest import text_sha256

    entries = [[r["id"], r["aspect"], r["gold"], text_sha256(r["text"])] for r in rows]
    entries.sort(key=lambda e: json.dumps(e))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def fit_section(job: Job, tokenizer):
    """`lengthfilter.Fit` for ``strategy: truncate``: the row with its section cut by
    `data.truncate.fit` (as `predict` cuts) so the rendered prompt has at most N tokens."""
    from llmscisci_cfg.data.truncate import TokenCount, fit
    from llmscisci_cfg.models import chat

    spec = job.recipe.data.length_filter
    counter = TokenCount(tokenizer)

    def fit_row(row: Row, max_tokens: int) -> Row:
        def messages(text: str) -> list[dict[str, str]]:
            return job.task.messages(row["aspect"], text)

        def render(text: str) -> str:
            return chat.render(tokenizer, messages(text), add_generation_prompt=True)

        _, cut, _ = fit(render, row["text"], max_tokens, spec.truncate, counter)
        return {**row, "prompt": messages(cut)}

    return fit_row


def _fill_report(report: BuildReport, splits: dict[str, list[Row]], dropped: Counter) -> None:
    docs = {name: {r["id"] for r in rows} for name, rows in splits.items()}
    report.examples = sum(len(rows) for rows in splits.values())
    report.dropped = dict(sorted(dropped.items()))
    report.splits = {name: len(rows) for name, rows in splits.items()}
    report.group_overlap = len(docs["train"] & docs["test"])
    report.documents = {name: len(ids) for name, ids in docs.items()}


def _to_datasetdict(splits: dict[str, list[Row]], method: str) -> DatasetDict:
    from datasets import Dataset, DatasetDict, Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    columns: dict[str, Any] = {
        "id": Value("string"),
        "aspect": Value("string"),
        "prompt": messages,
        "gold": List(Value("int64")),
    }
    for name in {"sft": ("completion",), "dpo": ("chosen", "rejected"), "grpo": ()}[method]:
        columns[name] = messages
    features = Features(columns)
    # from_dict, not from_list: from_list([]) loses the columns and fails on an empty split
    return DatasetDict(
        {
            name: Dataset.from_dict({c: [r[c] for r in rows] for c in columns}, features=features)
            for name, rows in splits.items()
        }
    )


# ----------------------------------------------------------------------------- cache


def cache_key(job: Job, tokenizer) -> str:
    """sha256 over everything the built dataset depends on.

    Covers: the source content hash, the trace file's content hash (SFT with traces), the
    whole ``data`` section (``data.clean`` and the length filter's strategy included), the
    cleaner's own code when ``data.clean`` is on, the effective split seed, the method name,
    the resolved task (prompts, categories, codes), the tokenizer (its full serialized
    vocabulary and rules) and the chat template text, plus `CACHE_VERSION`.
    """
    parts = _recipe_parts(job)
    parts["tokenizer"] = tokenizer_identity(tokenizer)
    parts["template"] = getattr(tokenizer, "chat_template", None)
    return _sha(parts)


def lookup_key(job: Job) -> str:
    """A key computable without loading the tokenizer (for `plan`): the recipe-side parts of
    `cache_key` plus the model and template *names* instead of their contents."""
    parts = _recipe_parts(job)
    recipe = job.recipe
    parts["model"] = [recipe.model.name_or_path, recipe.model.revision, recipe.model.family]
    parts["template"] = recipe.template.model_dump(mode="json")
    return _sha(parts)


def cached_report(job: Job) -> BuildReport | None:
    """The report of the newest cached build of this job, without loading a tokenizer or any
    ML library; None when `preprocess` (or `run`) has not built it yet."""
    pointer = job.cache_root / "index" / lookup_key(job)[:24]
    try:
        entry = Path(pointer.read_text(encoding="utf-8").strip())
        return BuildReport.from_json((entry / _REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _recipe_parts(job: Job) -> dict[str, Any]:
    recipe = job.recipe
    return {
        "version": CACHE_VERSION,
        "source": job.data.sha256,
        "traces": job.traces.sha256 if job.traces is not None and job.method == "sft" else None,
        "data": recipe.data.model_dump(mode="json"),
        "clean": _cleaner_sha256() if job.recipe.data.clean is not None else None,
        "split_seed": job.split_seed,
        "method": job.method,
        "task": job.task.model_dump(mode="json"),
    }


def _cleaner_sha256() -> str:
    """sha256 of `data.clean`'s source: a change to the cleaning rules rebuilds cleaned data."""
    from llmscisci_cfg.data import clean

    return hashlib.sha256(Path(clean.__file__).read_bytes()).hexdigest()


def _sha(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def tokenizer_identity(tokenizer) -> str:
    """sha256 of the serialized fast tokenizer (vocabulary, merges, normalizer, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(
        tokenizer, "_tokenizer", None
    )
    if backend is not None and hasattr(backend, "to_str"):
        text = backend.to_str()
    else:  # slow or custom tokenizer: its class, name and vocabulary
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        text = json.dumps(
            [
                type(tokenizer).__name__,
                getattr(tokenizer, "name_or_path", ""),
                sorted(vocab.items()),
            ]
        )
    special = json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str)
    return hashlib.sha256((text + special).encode()).hexdigest()


def _save(dataset: DatasetDict, report: BuildReport, path: Path) -> None:
    """Write to a temporary sibling, then rename: readers never see a half-written entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
    try:
        # an empty split needs one (empty) shard, else load_from_disk fails on it (datasets 5.2)
        shards = {name: 1 for name, split in dataset.items() if len(split) == 0}
        with quiet_datasets():
            dataset.save_to_disk(str(tmp / "dataset"), num_shards=shards)
        (tmp / _REPORT).write_text(report.to_json() + "\n", encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _point(pointer: Path, entry: Path) -> None:
    """Record ``entry`` as the newest build for a `lookup_key` (atomic rename)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(pointer.name + f".tmp-{os.getpid()}")
    tmp.write_text(str(entry) + "\n", encoding="utf-8")
    os.replace(tmp, pointer)


def _load_cached(path: Path) -> tuple[DatasetDict, BuildReport] | None:
    """The cached build, or None when the entry is unreadable (then it is rebuilt)."""
    from datasets import load_from_disk

    try:
        report = BuildReport.from_json((path / _REPORT).read_text(encoding="utf-8"))
        dataset = load_from_disk(str(path / "dataset"))
    except Exception:  # truncated, hand-edited or from another datasets version: rebuild
        return None
    report.cache_hit, report.cache_path = True, str(path)
    return dataset, report


def preview_conversations(
    dataset: DatasetDict, method: str, n: int
) -> list[tuple[str, list[dict]]]:
    """Up to ``n`` train conversations to show: prompt + the trained answer (DPO: chosen).

    GRPO rows have no answer (the policy writes it), so only the prompt is shown.
    """
    split = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    answer = {"sft": "completion", "dpo": "chosen"}.get(method)
    out = []
    for row in split.select(range(min(n, len(split)))):
        messages = row["prompt"] + (row[answer] if answer else [])
        out.append(
            (f"{row['id']} / {row['aspect']}" + (" (chosen)" if method == "dpo" else ""), messages)
        )
    return out
