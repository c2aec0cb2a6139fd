"""`build_dataset`: recipe → the train/test (and validation) `DatasetDict` every trainer and
eval reads, cached.

Steps (`data.build`): read the rows and give each its split (`data.splits`: fixed split files,
or a seeded split of the document ids; nothing tokenizer-dependent decides it), join the
labels table (``data.labels``), then in Arrow batches: one example per report per aspect
(sections read and cleaned by `data.clean.section_text`, labels decoded with the task's
answer kind, empty sections counted out), the method's rows, their token counts; then drop or
truncate over-long examples (a held-out example is truncated or listed as excluded, never
moved), fingerprint each split (the rows, and the prompts as the model reads them), save.
The result is exactly what TRL's trainers take: conversational ``prompt``/``completion``
(SFT), ``prompt``/``chosen``/``rejected`` (DPO), ``prompt`` plus the extra columns ``gold``, ``id`` and ``aspect`` (GRPO rewards get them as
keyword arguments). Which rows a method makes is its `rows.RowBuilder`, which the caller
passes (`llmscisci_cfg.train.methods.get(job.method)`): the data stage names no method.

The cache lives in ``data.cache_dir``, else ``$LLMSCISCI_CACHE``, else ``~/.cache/llmscisci``
(under ``datasets/<key>``), readable as the umask allows (it is shared like a run directory).
The key covers everything the output depends on and nothing else: file contents, never how
a path was written (see `cache_key`). Everything comes from the resolved `Job`: the task as
loaded, the column map, and the data files' sha256 computed once (the digests the manifest
records).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.data.report import BuildReport
from llmscisci_cfg.data.rows import RowBuilder
from llmscisci_cfg.data.sources import quiet_datasets
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.recipe.resolve import Job

if TYPE_CHECKING:
    from datasets import DatasetDict

#: Bump when the built format changes, so old caches are not reused.
CACHE_VERSION = 8  # 8: an empty label cell is no_label; KTO's held-out rows are gold answers
_REPORT = "build_report.json"


def build_dataset(
    job: Job, rows: RowBuilder, *, use_cache: bool = True, tokenizer=None
) -> tuple[DatasetDict, BuildReport]:
    """The job's splits of ``rows`` (the job's method, `llmscisci_cfg.train.methods.get`) and
    what building them did (from the cache when possible).

    ``tokenizer`` defaults to `models.load.load_tokenizer` (the recipe's chat template); callers
    that already hold it pass it. A predict recipe has no training examples: a `UserError`.
    """
    if not job.recipe.method.needs.trains:
        raise UserError(
            f"{job.name}: a predict recipe (method: predict) builds no train/test split; it "
            "reads its table as it is: run `llmscisci predict RECIPE --limit N` for a sample of "
            "its prompts and answers, and `llmscisci agree` to compare its labels with gold"
        )
    require_inputs(job)
    if tokenizer is None:
        tokenizer = job.tokenizer()
    key = cache_key(job, tokenizer)
    path = job.cache_root / "datasets" / key[:24]
    pointer = job.cache_root / "index" / lookup_key(job)[:24]
    if rows.name != job.method:  # the cache key names the job's method
        raise ValueError(f"rows of method {rows.name} for a {job.method} recipe")
    if use_cache and (path / _REPORT).is_file():
        cached = _load_cached(path)
        if cached is not None:
            _point(pointer, path)
            return cached
    if not use_cache:
        return _build_uncached(job, rows, tokenizer, key)
    return _build_cached(job, rows, tokenizer, key, path, pointer)


def _build_uncached(
    job: Job, rows: RowBuilder, tokenizer, key: str
) -> tuple[DatasetDict, BuildReport]:
    """Build in a temporary folder and return the splits held in memory."""
    with tempfile.TemporaryDirectory(prefix="llmscisci-build-") as tmp:
        report = _build_report_into(job, rows, tokenizer, Path(tmp))
        dataset = _load_in_memory(Path(tmp) / "dataset")
    report.source_sha256, report.cache_key = job.data.sha256, key
    return dataset, report


def _build_cached(
    job: Job, rows: RowBuilder, tokenizer, key: str, path: Path, pointer: Path
) -> tuple[DatasetDict, BuildReport]:
    """Build beside the cache entry ``path``, publish it there, and return it (memory-mapped
    from the cache). A cache that cannot be written costs a rebuild next time, nothing else."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
    except OSError as exc:
        warnings.warn(f"dataset cache not written to {path}: {exc}", stacklevel=3)
        return _build_uncached(job, rows, tokenizer, key)
    try:
        report = _build_report_into(job, rows, tokenizer, work)
        report.source_sha256, report.cache_key = job.data.sha256, key
        try:
            _publish(work, report, path)
        except OSError as exc:
            warnings.warn(f"dataset cache not written to {path}: {exc}", stacklevel=3)
            return _load_in_memory(work / "dataset"), report
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _point(pointer, path)
    cached = _load_cached(path)
    if cached is None:  # removed or damaged by someone else the moment it was written
        raise UserError(f"{path}: the dataset just written there cannot be read back")
    cached[1].cache_hit = False
    return cached


def require_inputs(job: Job) -> None:
    """Every data file the job reads exists (one `UserError` naming each missing one, by its
    recipe key), before a tokenizer or model is loaded."""
    problems = []
    for file in job.inputs.values():
        if file.path is None:
            problems.append(file.problem or f"{file.key}: {file.ref}: not found")
    if problems:
        raise UserError("\n".join(problems))


def _load_in_memory(folder: Path) -> DatasetDict:
    from datasets import load_from_disk

    with quiet_datasets():
        return load_from_disk(str(folder), keep_in_memory=True)


def _build_report_into(job: Job, rows: RowBuilder, tokenizer, work: Path) -> BuildReport:
    """Build the splits and save them to ``work/dataset``; the report of the build."""
    from datasets import DatasetDict

    from llmscisci_cfg.data.assemble import assemble
    from llmscisci_cfg.data.build import build_examples

    (work / "parts").mkdir()
    built = build_examples(job, rows, tokenizer, work / "parts")
    splits, report = assemble(job, tokenizer, built)
    dataset = DatasetDict(splits)
    # an empty split needs one (empty) shard, else load_from_disk fails on it (datasets 5.2)
    shards = {name: 1 for name, split in dataset.items() if len(split) == 0}
    with quiet_datasets():
        dataset.save_to_disk(str(work / "dataset"), num_shards=shards)
    return report


def eval_split(dataset: Any) -> str:
    """The split TRL evaluates on during training: ``validation`` when the recipe has one
    (``data.splits.validation``), else ``test``."""
    return "validation" if "validation" in dataset else "test"


def held_out_sha256(rows: list[dict]) -> str:
    """sha256 naming a list of built rows (``id``, ``aspect``, ``gold``, ``text``) as the build
    names a split's rows (`assemble.set_sha256`; the test-set sha256): the same examples, the
    same value."""
    from llmscisci_cfg.data.assemble import set_sha256
    from llmscisci_cfg.digest import text_sha256

    return set_sha256([r["id"], r["aspect"], r["gold"], text_sha256(r["text"])] for r in rows)


# ----------------------------------------------------------------------------- cache


def cache_key(job: Job, tokenizer) -> str:
    """sha256 over everything the built dataset depends on, and nothing else.

    Covers: the content sha256 of every data file read (rows or split files, labels table,
    SFT's trace file), the ``data`` section without its paths (``data.clean``, the split, the
    length filter and its strategy included; a path written relative or absolute, or another
    cache folder, names the same data), the cleaner's own code when ``data.clean`` is on, the
    effective split seed, the method name and its keys that shape the rows
    (`schema.Needs.row_keys`: KTO's answer columns), the resolved task (prompts, categories, codes), the
    tokenizer (its full serialized vocabulary and rules) and the chat template text, plus
    `CACHE_VERSION`.
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
    method = job.recipe.method
    return {
        "version": CACHE_VERSION,
        "files": data_files_sha256(job),
        "data": data_settings(job),
        "clean": _cleaner_sha256() if job.recipe.data.clean is not None else None,
        "split_seed": job.split_seed,
        "method": job.method,
        "method_rows": {k: getattr(method, k) for k in method.needs.row_keys},
        "task": job.task.model_dump(mode="json"),
    }


def data_files_sha256(job: Job) -> dict[str, str]:
    """Content sha256 of each data file the build reads, by role (``source`` or the split
    names, ``labels``, ``traces`` for a method that reads them: `schema.Needs.traces`)."""
    return {
        role: file.sha256
        for role, file in job.inputs.items()
        if role != "traces" or job.recipe.method.needs.traces
    }


def data_settings(job: Job) -> dict[str, Any]:
    """The recipe's ``data`` section without the paths in it (file contents are keyed by
    `data_files_sha256`, the task by its resolved content): what the key covers of it."""
    data = job.recipe.data.model_dump(mode="json")
    data.pop("cache_dir", None)
    data.pop("task", None)
    for section, keys in (
        ("source", ("path",)),
        ("splits", ("train", "validation", "test")),
        ("labels", ("path",)),
        ("traces", ("path",)),
    ):
        if isinstance(data.get(section), dict):
            for key in keys:
                data[section][key] = data[section][key] is not None
    return data


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


def _publish(work: Path, report: BuildReport, path: Path) -> None:
    """Make the build in ``work`` the cache entry ``path``: the report written beside the
    dataset, modes as a plain ``mkdir``/``open`` would give them under the umask (colleagues
    share a cache; ``mkdtemp`` makes a private 0700 folder), then one rename, so readers
    never see a half-written entry."""
    shutil.rmtree(work / "parts", ignore_errors=True)
    (work / _REPORT).write_text(report.to_json() + "\n", encoding="utf-8")
    plain_modes(work)
    if path.exists():
        shutil.rmtree(path)
    os.replace(work, path)


def plain_modes(folder: Path) -> None:
    """Folders 0777 and files 0666, less the umask, under ``folder`` (itself included)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, names in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in names:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def _point(pointer: Path, entry: Path) -> None:
    """Record ``entry`` as the newest build for a `lookup_key` (atomic rename)."""
    try:
        _write_pointer(pointer, entry)
    except OSError as exc:  # plan will not find this build; nothing else depends on it
        warnings.warn(f"dataset cache index not written at {pointer}: {exc}", stacklevel=2)


def _write_pointer(pointer: Path, entry: Path) -> None:
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
    dataset: DatasetDict, rows: RowBuilder, n: int
) -> list[tuple[str, list[dict]]]:
    """Up to ``n`` train conversations to show: prompt + the method's first answer column
    (DPO: chosen, named in the title), and its other columns' values in the title.

    GRPO rows have no answer (the policy writes it), so only the prompt is shown.
    """
    split = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    answer = rows.answer_columns[0] if rows.answer_columns else None
    out = []
    for row in split.select(range(min(n, len(split)))):
        messages = row["prompt"] + (row[answer] if answer else [])
        notes = [answer] if answer and len(rows.answer_columns) > 1 else []
        notes += [f"{name} {row[name]}" for name in rows.extra_columns]
        title = f"{row['id']} / {row['aspect']}" + (f" ({', '.join(notes)})" if notes else "")
        out.append((title, messages))
    return out
