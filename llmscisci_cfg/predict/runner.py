"""`llmscisci predict`: a recipe's task over every row of its table, through the engine.

Reads the whole table (no split), builds one `predict.items.Item` per row and aspect,
generates in chunks (appending each finished section to the journal, so ``--resume`` redoes
nothing), and at the end writes the output atomically: every input row and column in input
order plus ``<aspect>_pred`` (the parsed answer), ``<aspect>_raw`` (the completion),
``<aspect>_reason`` (why there is no prediction; empty when there is one), ``<aspect>_truncated``
(and ``<aspect>_shots`` with few-shot examples) — or, for a rationale task, the traces JSONL
that ``data.traces`` reads — and ``OUTPUT.report.json``. With ``launch.num_processes > 1`` the
rows are sharded across processes through ``accelerate launch`` and this process merges them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.predict import journal
from llmscisci_cfg.predict.confidence import confidence
from llmscisci_cfg.recipe.resolve import Job

#: Sections generated per engine call (and journalled together).
CHUNK = 64


@dataclass(frozen=True)
class PredictOptions:
    output: Path | None = None
    limit: int | None = None
    resume: bool = False
    overwrite: bool = False
    in_process: bool = False
    device: str = "auto"


@dataclass
class PredictResult:
    output: Path
    report_path: Path
    report: dict[str, Any]


def default_output(job: Job) -> Path:
    suffix = ".traces.jsonl" if job.task.kind == "rationale" else ".jsonl"
    return Path("predictions") / f"{job.name}{suffix}"


def predict(
    recipe_ref: str, overrides: tuple[str, ...], opts: PredictOptions, echo=print
) -> PredictResult | None:
    """Predict, or (a worker of a sharded run) predict this process's share; see the module."""
    from llmscisci_cfg.recipe.loader import load_job

    job = load_job(recipe_ref, overrides)
    if job.method != "predict":
        raise UserError(
            f"{recipe_ref}: method is {job.method}; `llmscisci predict` needs method: "
            "{name: predict} (a training recipe runs with `llmscisci run`)"
        )
    output = Path(opts.output) if opts.output else default_output(job)
    _check_output(job, output)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    worker = opts.in_process and world > 1
    table, rows = _table(job, opts.limit)
    if not worker:
        _prepare(output, opts)
        finished = _finished(job, output, opts, rows)
        if finished is not None:
            echo(f"{output}: already complete ({finished.report['rows']} rows); nothing to do")
            return finished
    _check_settings(job, output)
    if job.recipe.launch.num_processes > 1 and not opts.in_process:
        _launch(job, recipe_ref, overrides, output, opts, echo)
    else:
        _predict_share(job, table, rows, output, opts, rank, world, echo)
        if worker:
            return None
    return _finish(job, table, rows, output, opts, echo)


def settings(job: Job) -> dict[str, Any]:
    """Everything that shapes an answer; a resumed prediction must have the same (its answers
    and the earlier ones end up in one table), and report.json records it. The table itself
    may grow between an interruption and ``--resume`` (`_check_resumed_rows` checks that the
    finished rows kept their ids); a finished output is compared with it (`_finished`)."""
    from llmscisci_cfg.digest import text_sha256

    task, g, method = job.task, job.recipe.generation, job.recipe.method
    sampling = vars(_sampling(job)) | {"structured": g.structured}
    fields = {
        "generation": job.generation.describe(),
        "task": f"{task.name} ({task.kind})",
        "aspects": list(job.aspects),
        "prompt_template_sha256": text_sha256(task.system_prompt + "\0" + task.user_prompt),
        "backend": g.backend,
        "model": (g.model or job.model.name) if g.backend == "openai" else job.model.name,
        "base_url": g.base_url if g.backend == "openai" else None,
        "sampling": sampling,
        "shots": [method.shots, method.selection, str(method.pool) if method.pool else None],
        "answers": method.answers,
        "max_prompt_tokens": method.max_prompt_tokens,
        "truncate": method.truncate,
        "output_prefix": method.output_prefix,
        "clean": None if job.recipe.data.clean is None else job.recipe.data.clean.model_dump(),
    }
    return json.loads(json.dumps(fields))  # as read back from a journal or report


def _differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = [k for k in now if before.get(k) != now[k]]
    return ", ".join(f"{k}: {before.get(k)!r} then, {now[k]!r} now" for k in keys)


def _check_settings(job: Job, output: Path) -> None:
    """`UserError` when a journal was written with other settings than this run's."""
    now = settings(job)
    for path, before in journal.read_settings(output):
        if before != now:
            raise UserError(
                f"--resume: {path.name} was written with other settings "
                f"({_differences(before, now)}); its answers and this run's would be mixed in "
                "one table: resume with the same "
                "recipe and --set values, or start again with --overwrite"
            )


def _report_path(output: Path) -> Path:
    return output.with_name(output.name + ".report.json")


def _finished(job: Job, output: Path, opts: PredictOptions, rows: list) -> PredictResult | None:
    """``--resume`` of a prediction that finished (its output and report there, no journal):
    the result as it is, or a `UserError` when resuming would change or shrink it."""
    if not opts.resume or journal.paths(output) or not output.exists():
        return None
    path = _report_path(output)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no readable report: predicted again
    if not isinstance(report, dict) or not isinstance(report.get("settings"), dict):
        raise UserError(
            f"--resume: {output} is finished, but its report does not record the settings it "
            "was predicted with (an older llmscisci): use it as it is, or predict it again "
            "with --overwrite"
        )
    now = settings(job)
    if report["settings"] != now:
        raise UserError(
            f"--resume: {output} was predicted with other settings "
            f"({_differences(report['settings'], now)}); pass --overwrite to predict it again"
        )
    before = (report.get("source") or {}).get("sha256")
    if before != job.data.sha256:
        raise UserError(
            f"--resume: {output} was predicted from another version of {job.data.ref} "
            f"(sha256 {before}, now {job.data.sha256}); pass --overwrite to predict it again"
        )
    if report.get("rows") == len(rows):
        return PredictResult(output, path, report)
    if isinstance(report.get("rows"), int) and report["rows"] > len(rows):
        raise UserError(
            f"--resume: {output} holds {report['rows']} rows; --limit {opts.limit} would replace "
            "it with fewer: give a larger --limit, another --output, or --overwrite"
        )
    return None


def _check_output(job: Job, output: Path) -> None:
    from llmscisci_cfg.data.table import table_format

    if job.task.kind == "rationale" and not output.name.endswith(".jsonl"):
        raise UserError(
            f"--output {output}: rationales are written as traces JSONL; end it in .jsonl"
        )
    table_format(output)  # a UserError for an unknown extension


def _prepare(output: Path, opts: PredictOptions) -> None:
    """Refuse to replace a finished output or an interrupted one's journal without being told."""
    if opts.resume and opts.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"--output {output}: cannot create its folder: {exc.strerror or exc}"
        ) from None
    partial = journal.paths(output)
    if opts.overwrite:
        journal.remove(output)
        _remove_stats(output)  # a crashed sharded run's per-rank figures would be summed in
        return
    if partial and not opts.resume:
        raise UserError(
            f"{output}: an earlier prediction (interrupted, or with --limit) left "
            f"{partial[0].name}; pass --resume to continue it (finished rows are not asked "
            "again) or --overwrite to start over"
        )
    if output.exists() and not opts.resume:
        raise UserError(
            f"{output}: exists; pass --overwrite to replace it or choose another --output"
        )
    output.parent.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------- the work


def _predict_share(
    job: Job, table, rows: list, output: Path, opts: PredictOptions, rank: int, world: int, echo
) -> None:
    """Generate this process's rows (``row % world == rank``) not yet in any journal. A
    journal that holds nothing generated when this fails (a server that cannot be reached, a
    missing API key) is removed: there is nothing to resume."""
    from llmscisci_cfg.predict.items import read

    done = journal.read(output)
    _check_resumed_rows(job, done, rows, output)
    context = _Context.create(job, opts.device, table)
    items = []
    for index, row in enumerate(rows):
        if index % world != rank:
            continue
        for aspect in job.aspects:
            if (index, aspect) not in done:
                items.append(context.item(index, aspect, row))
    todo = [item for item in items if item.requests]
    engine = context.engine() if todo else None
    log = journal.Journal(journal.path_for(output, rank, world), settings(job))
    generated = 0
    try:
        log.write([_entry(item) for item in items if not item.requests])
        if todo:
            echo(
                f"predict: {len(todo)} sections with {context.engine_name()} ({len(items) - len(todo)} skipped)"
            )
        _decide_compile(engine, [r for item in todo for r in item.requests])
        with _progress(len(todo), world) as bar:
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                requests = [r for item in chunk for r in item.requests]
                completions = engine.generate(requests)
                k, entries = 0, []
                for item in chunk:
                    mine = completions[k : k + len(item.requests)]
                    k += len(item.requests)
                    entries.append(_entry(item, read(job.task, item, mine), mine))
                generated += len(entries)  # before writing: an interrupted write keeps the journal
                log.write(entries)
                bar.update(len(chunk))
                bar.set_postfix_str(f"{engine.stats.tokens_per_second:.0f} tok/s")
        if engine is not None:
            stats_path = output.with_name(f"{output.name}.stats.rank{rank}.json")
            stats_path.write_text(json.dumps(engine.stats.as_dict()), encoding="utf-8")
    except BaseException:
        log.close()
        if not done and not generated:
            log.path.unlink(missing_ok=True)
        raise
    log.close()


def _progress(total: int, world: int):
    """One progress line for the sections (rows done, tokens/s); none in sharded workers."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predict", unit="section", disable=world > 1 or total == 0)


def _entry(item, outcome=None, completions=None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "row": item.row,
        "aspect": item.aspect,
        "id": item.id,
        "reason": item.reason,
        "truncated": item.truncated,
        "shots": item.shots,
        "pred": None,
        "raw": None,
        "valid": False,
        "note": "",
    }
    if outcome is not None:
        entry |= {
            "pred": outcome.pred,
            "raw": outcome.raw,
            "valid": outcome.valid,
            "note": outcome.note,
        }
        entry["prompt_tokens"] = sum(c[0].prompt_tokens for c in completions)
        entry["completion_tokens"] = sum(c[0].completion_tokens for c in completions)
        if len(completions) == 1:  # one answer: its label's probability
            value, why = confidence(completions[0][0]) if outcome.valid else (None, "invalid")
            entry["confidence"] = None if value is None else round(value, 6)
            entry["confidence_note"] = why
    return entry


def _table(job: Job, limit: int | None):
    """The source table (every row and column) and its first ``limit`` rows; missing columns
    are a `UserError` naming the file and the recipe key."""
    from llmscisci_cfg.data.labels import join_table
    from llmscisci_cfg.data.sources import column_list
    from llmscisci_cfg.data.table import read_table

    table = join_table(
        read_table(job.data.require()), job
    )  # data.labels: every row, labelled or not
    cols = job.columns
    wanted = {"data.columns.id": cols.id}
    wanted |= {f"data.columns.text.{a}": c for a, c in cols.text.items()}
    if job.recipe.method.pool is None and cols.label:
        wanted |= {f"data.columns.label.{a}": c for a, c in cols.label.items()}
    for aspect, columns in (job.recipe.method.answers or {}).items():
        wanted |= {f"method.answers.{aspect}": c for c in columns}
    missing = [
        f"{table.path}: column {c!r} ({key}) not found"
        for key, c in wanted.items()
        if c not in table.columns
    ]
    if missing:
        raise UserError("\n".join(missing) + f"; columns: {column_list(table.columns)}")
    clash = [c for c in output_columns(job) if c in table.columns]
    if clash:
        raise UserError(
            f"{table.path}: already has the column(s) {', '.join(clash)} that this prediction "
            "writes (the output of an earlier predict?); name this run's columns with "
            "--set method.output_prefix=PREFIX_ (e.g. judge_) so nothing is overwritten"
        )
    return table, table.rows[:limit] if limit else table.rows


def output_columns(job: Job) -> list[str]:
    """The columns a prediction adds to the table (none for rationales: they write traces)."""
    if job.task.kind == "rationale":
        return []
    names = ["pred", "raw", "reason", "truncated"]
    names += ["confidence"] if job.task.kind == "label" else []
    names += ["shots"] if job.recipe.method.shots else []
    prefix = job.recipe.method.output_prefix
    return [f"{prefix}{aspect}_{name}" for aspect in job.aspects for name in names]


@dataclass
class _Context:
    """What every section of one prediction shares: builders per aspect, the shot pool, the
    engine (built on first use)."""

    job: Job
    device: str
    builders: dict[str, Any]
    pool: dict[str, list]
    tokenizer: Any
    opened: Any  # `models.load.Opened`: tokenizer and chat template (weights on first use)
    cleaning: Any = None  # `data.clean.CleanOptions` of the recipe's data.clean
    _engine: Any = None

    @classmethod
    def create(cls, job: Job, device: str, table) -> _Context:
        from llmscisci_cfg.predict.items import Builder

        opened = _opened(job, device)
        tokenizer = opened.tokenizer
        render = _renderer(tokenizer)
        sampling = _sampling(job)
        limit = _prompt_limit(job, sampling.max_new_tokens)
        from llmscisci_cfg.data.truncate import TokenCount

        counter = TokenCount(tokenizer)
        builders = {
            aspect: Builder(
                job.task,
                sampling,
                job.generation.constraint(aspect),
                render,
                counter,
                limit,
                job.recipe.method.truncate,
            )
            for aspect in job.aspects
        }
        from llmscisci_cfg.data.clean import options_of

        cleaning = options_of(job.recipe.data.clean)
        return cls(job, device, builders, _pool(job, table), tokenizer, opened, cleaning)

    def item(self, index: int, aspect: str, row: dict[str, Any]):
        from llmscisci_cfg.data.clean import section_text
        from llmscisci_cfg.data.examples import cell_text
        from llmscisci_cfg.predict.items import build_item
        from llmscisci_cfg.predict.shots import choose

        job, cols = self.job, self.job.columns
        doc = cell_text(row.get(cols.id))  # as training reads ids (0 stays "0")
        text = section_text(row.get(cols.text[aspect]), self.cleaning)  # as training reads it
        gold = _gold(job, aspect, row) if cols.label and job.task.kind == "rationale" else None
        method = job.recipe.method
        answers = [row.get(c) for c in (method.answers or {}).get(aspect, [])]
        shots = []
        if method.shots and job.task.kind == "label":
            seed = (
                job.recipe.generation.seed
                if job.recipe.generation.seed is not None
                else job.recipe.train.seed
            )
            shots = choose(
                self.pool.get(aspect, []), method.shots, doc, aspect, seed, method.selection
            )
        return build_item(
            self.builders[aspect], index, aspect, doc, text, gold, answers or None, shots
        )

    def engine(self):
        if self._engine is None:
            from llmscisci_cfg.models.engines import open_engine

            job = self.job
            self._engine, opened = open_engine(
                job.generation, job.model, job.template, job.recipe.model, self.device, _quiet
            )
            self.opened = opened if opened.tokenizer is not None else self.opened
        return self._engine

    def engine_name(self) -> str:
        g = self.job.recipe.generation
        if g.backend == "openai":
            return f"{g.model or self.job.model.name} at {g.base_url}"
        return f"{self.job.model.name} ({g.backend})"


def _opened(job: Job, device: str):
    """The tokenizer and chat template predict renders and counts with, before any weights
    load: the model's own template for a run directory or a model folder (with a warning
    when the recipe names another), else the recipe's; None for a hosted model whose
    tokenizer is not here (tokens are then estimated from characters)."""
    from llmscisci_cfg.models.engines import tokenizer_only

    return tokenizer_only(job.model, job.template, job.generation.backend == "transformers")


def _quiet(message: str) -> None:
    """The template warning, said once (`_opened` said it already)."""


def _renderer(tokenizer):
    if tokenizer is None:
        return lambda messages: "\n\n".join(m["content"] for m in messages)
    from llmscisci_cfg.models import chat

    return lambda messages: chat.render(tokenizer, messages, add_generation_prompt=True)


def _sampling(job: Job):
    """The recipe's resolved sampling, with the log-probabilities confidence is read from."""
    from dataclasses import replace

    gen = job.generation
    return replace(gen.sampling, logprobs=gen.logprobs and job.task.kind == "label")


def _check_resumed_rows(job: Job, done: dict, rows: list[dict], output: Path) -> None:
    """`UserError` when a journal entry's document id is not the table's at that row: the
    input was re-sorted or edited since the interrupted run, and its answers would land on
    other rows."""
    if not done or not job.columns.id:
        return
    from llmscisci_cfg.data.examples import cell_text

    for (index, aspect), entry in sorted(done.items()):
        if index >= len(rows):
            continue
        now = cell_text(rows[index].get(job.columns.id))
        if str(entry.get("id", "")) != now:
            raise UserError(
                f"--resume: row {index + 1} ({aspect}) of the interrupted run was id "
                f"{entry.get('id')!r}, the table's row {index + 1} is now id {now!r}: "
                f"{job.data.ref} changed since; start again with --overwrite (journal next "
                f"to {output})"
            )


def _decide_compile(engine: Any, requests: list[Any]) -> None:
    """``compile: auto`` over the whole job, not per chunk: a long predict compiles once (a
    chunk alone never has enough decode steps to pay for it)."""
    if not getattr(engine, "may_compile", False) or engine.compiled or not requests:
        return
    from llmscisci_cfg.models.generate import worth_compiling

    batches = -(-len(requests) // engine.batch_size)
    engine.compiled = worth_compiling(batches * requests[0].sampling.max_new_tokens)


def _prompt_limit(job: Job, max_new_tokens: int) -> int | None:
    """``method.max_prompt_tokens``, else the model's context minus the answer when its config
    is here (a local or built-in model, also behind a server); a hosted model's context is not
    known: None (a server that refuses a long prompt says so, and how to set the limit)."""
    method = job.recipe.method
    if method.max_prompt_tokens is not None:
        return method.max_prompt_tokens
    local = job.model.builtin or job.model.local_dir is not None
    if job.recipe.generation.backend != "transformers" and not local:
        return None
    from llmscisci_cfg.models.load import context_length

    return context_length(job.model) - max_new_tokens


def _gold(job: Job, aspect: str, row: dict[str, Any]) -> Any:
    from llmscisci_cfg.task.labels import LabelError

    kind = job.task.label_kind(aspect)
    try:
        label = kind.decode_gold(row.get(job.columns.label[aspect]), job.recipe.data.label_codec)
    except LabelError:
        return None
    rule = getattr(kind, "rule", None)  # a gold that breaks the task's constraints: unreadable
    return label if rule is None or rule.allows(label) else None


def _pool(job: Job, table) -> dict[str, list]:
    method = job.recipe.method
    if not method.shots or job.task.kind != "label" or not job.columns.label:
        return {}
    from llmscisci_cfg.data.table import read_table
    from llmscisci_cfg.predict.shots import pool_shots

    rows = read_table(job.path(method.pool)).rows if method.pool else table.rows
    cols = job.columns
    codec = job.recipe.data.label_codec
    from llmscisci_cfg.data.clean import options_of

    cleaning = options_of(job.recipe.data.clean)
    return pool_shots(rows, job.task, cols.id, cols.text, cols.label, codec, cleaning)


# ----------------------------------------------------------------------------- several processes


def _launch(
    job: Job, recipe_ref: str, overrides: tuple[str, ...], output: Path, opts: PredictOptions, echo
) -> None:
    """Run ``launch.num_processes`` workers through ``accelerate launch``; each predicts its
    share of the rows into its own journal; this process merges them afterwards."""
    import shutil
    import tempfile

    import yaml

    from llmscisci_cfg.train.launch import accelerate_config

    staging = Path(tempfile.mkdtemp(prefix="llmscisci-predict-"))
    config = staging / "accelerate_config.yaml"
    n = job.recipe.launch.num_processes
    config.write_text(yaml.safe_dump(accelerate_config(job.recipe, job.device)), encoding="utf-8")
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    env = dict(os.environ)
    if job.device == "cpu":
        argv += ["--multi_gpu"]
        env["ACCELERATE_USE_CPU"] = "true"
    argv += ["--num_processes", str(n), "-m", "llmscisci_cfg", "predict", recipe_ref]
    argv += [f"--set={o}" for o in overrides] + [
        "--output",
        str(output),
        "--in-process",
        "--resume",
    ]
    if opts.limit:
        argv += ["--limit", str(opts.limit)]
    echo(f"launch: {' '.join(argv)}")
    try:
        result = subprocess.run(argv, env=env)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if result.returncode != 0:
        raise UserError(
            f"the prediction processes exited with code {result.returncode}; rerun with --resume"
        )


# ----------------------------------------------------------------------------- writing


def _finish(job: Job, table, rows: list, output: Path, opts: PredictOptions, echo) -> PredictResult:
    """Merge the journals into the output (input order) and the report; remove the journals,
    unless ``--limit`` left rows of the table unpredicted (a later ``--resume`` uses them)."""
    from llmscisci_cfg.data.table import write_table

    done = journal.read(output)
    missing = [(i, a) for i in range(len(rows)) for a in job.aspects if (i, a) not in done]
    if missing:
        raise UserError(
            f"{output}: {len(missing)} sections were not predicted; rerun with --resume"
        )
    if job.task.kind == "rationale":
        traces = [
            {"id": done[(i, a)]["id"], "aspect": a, "trace": done[(i, a)]["pred"]}
            for i in range(len(rows))
            for a in job.aspects
            if done[(i, a)]["valid"]
        ]
        write_table(output, traces, ["id", "aspect", "trace"])
    else:
        merged, prefix = [], job.recipe.method.output_prefix
        for i, row in enumerate(rows):
            out = dict(row)
            for aspect in job.aspects:
                entry, name = done[(i, aspect)], f"{prefix}{aspect}"
                out |= {
                    f"{name}_pred": entry["pred"],
                    f"{name}_raw": entry["raw"],
                    f"{name}_reason": entry["reason"]
                    or ("" if entry["valid"] else "invalid_answer"),
                    f"{name}_truncated": entry["truncated"],
                }
                if job.task.kind == "label":
                    out[f"{name}_confidence"] = entry.get("confidence")
                if job.recipe.method.shots:
                    out[f"{name}_shots"] = entry["shots"]
            merged.append(out)
        write_table(output, merged, list(table.columns) + output_columns(job))
    report = build_report(job, output, rows, done)
    report_path = _report_path(output)
    from llmscisci_cfg.runs.rundir import write_json

    write_json(report_path, report)
    if len(rows) < len(table.rows):  # what --limit left out may follow with --resume
        echo(
            f"--limit {opts.limit} of {len(table.rows)} rows: the journal stays beside "
            f"{output.name} for a later --resume (answers already paid for are not asked again)"
        )
    else:
        journal.remove(output)
    _remove_stats(output)
    echo(summary(report))
    return PredictResult(output, report_path, report)


def build_report(job: Job, output: Path, rows: list, done: dict) -> dict[str, Any]:
    """``OUTPUT.report.json``: what was predicted, skipped, truncated, valid; the model, the
    prompt templates' sha256, sampling, tokens and seconds."""
    from llmscisci_cfg.digest import text_sha256

    task, g = job.task, job.recipe.generation
    entries = [done[(i, a)] for i in range(len(rows)) for a in job.aspects]
    skipped = Counter(e["reason"] for e in entries if e["reason"])
    per_aspect: dict[str, Any] = {}
    for aspect in job.aspects:
        mine = [e for e in entries if e["aspect"] == aspect and not e["reason"]]
        valid = [e for e in mine if e["valid"]]
        part: dict[str, Any] = {
            "sections": len(mine),
            "valid": len(valid),
            "valid_rate": round(len(valid) / len(mine), 4) if mine else None,
            "truncated": sum(e["truncated"] for e in mine),
        }
        if task.kind == "label":
            kind = task.label_kind(aspect)
            counts = Counter()
            for e in valid:
                counts.update(kind.counts(kind.decode_gold(e["pred"])))
            part["frequencies"] = {n: counts[n] for n in kind.categories}
            part["confidence"] = _confidence_summary(mine)
        elif task.kind == "judge":
            part["verdicts"] = dict(Counter(str(e["pred"]) for e in valid))
            part["inconsistent_pairs"] = sum(e["note"] == "inconsistent" for e in mine)
        elif task.kind == "rationale":
            part["dropped"] = dict(Counter(e["note"] for e in mine if not e["valid"]))
        per_aspect[aspect] = part
    stats = _stats(output)
    predicted = [e for e in entries if not e["reason"]]
    report: dict[str, Any] = {
        "task": {"name": task.name, "kind": task.kind},
        "source": {"file": str(job.data.require()), "sha256": job.data.sha256},
        "output": str(output),
        "rows": len(rows),
        "sections": len(entries),
        "predicted": len(predicted),
        "skipped": dict(skipped),
        "truncated": sum(e["truncated"] for e in predicted),
        "valid_rate": round(sum(e["valid"] for e in predicted) / len(predicted), 4)
        if predicted
        else None,
        "aspects": per_aspect,
        "backend": g.backend,
        "model": (g.model or job.model.name) if g.backend == "openai" else job.model.name,
        "base_url": g.base_url if g.backend == "openai" else None,
        "prompt_template_sha256": text_sha256(task.system_prompt + "\0" + task.user_prompt),
        "clean": None if job.recipe.data.clean is None else job.recipe.data.clean.model_dump(),
        "sampling": vars(_sampling(job)) | {"structured": g.structured},
        "shots": {"k": job.recipe.method.shots, "selection": job.recipe.method.selection}
        if job.recipe.method.shots
        else None,
        "tokens": {
            "prompt": sum(e.get("prompt_tokens", 0) for e in entries),
            "completion": sum(e.get("completion_tokens", 0) for e in entries),
        },
        "seconds": stats.get("seconds"),
        "tokens_per_second": stats.get("tokens_per_second"),
        "generation": job.generation.describe(_opened(job, "cpu").template),
        "settings": settings(job),
    }
    if task.kind == "extract":
        report["schema_valid_rate"] = report["valid_rate"]
    report["sampling"]["stop"] = list(report["sampling"]["stop"])
    return report


def _confidence_summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """How many answers have a confidence, their mean, and why the others have none."""
    values = [e["confidence"] for e in entries if e.get("confidence") is not None]
    missing = Counter(
        e.get("confidence_note") or "not recorded" for e in entries if e.get("confidence") is None
    )
    return {
        "rows": len(values),
        "mean": round(sum(values) / len(values), 4) if values else None,
        "missing": dict(missing),
    }


def _remove_stats(output: Path) -> None:
    for path in output.parent.glob(f"{output.name}.stats.rank*.json"):
        path.unlink(missing_ok=True)


def _stats(output: Path) -> dict[str, Any]:
    seconds = completion = 0.0
    for path in output.parent.glob(f"{output.name}.stats.rank*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        seconds = max(seconds, data.get("seconds", 0.0))
        completion += data.get("completion_tokens", 0)
    return {
        "seconds": round(seconds, 2),
        "tokens_per_second": round(completion / seconds, 1) if seconds else None,
    }


def summary(report: dict[str, Any]) -> str:
    skipped = ", ".join(f"{n} {r}" for r, n in report["skipped"].items()) or "none"
    valid = report["valid_rate"]
    return (
        f"{report['rows']} rows, {report['predicted']} sections predicted "
        f"({'–' if valid is None else f'{valid:.0%}'} valid, {report['truncated']} truncated), "
        f"skipped: {skipped}\nwrote {report['output']}"
    )


@dataclass
class PredictPlan:
    """What `predict` would do (for `plan`): task, engine, sampling, output. Loads no model."""

    recipe_ref: str
    facts: dict[str, Any]

    @classmethod
    def of(cls, recipe_ref: str, job: Job) -> PredictPlan:
        g, method = job.recipe.generation, job.recipe.method
        sampling = _sampling(job)
        facts = {
            "task": f"{job.task.name} ({job.task.kind}), aspects {', '.join(job.aspects)}",
            "source": job.data.ref,
            "engine": g.backend
            + (
                f" at {g.base_url}, model {g.model or job.model.name}"
                if g.backend == "openai"
                else f", model {job.model.name}"
            ),
            "sampling": f"max_new_tokens {sampling.max_new_tokens}, temperature {sampling.temperature}, top_p {sampling.top_p}",
            "structured output": "on" if g.structured else "off",
            "shots": f"{method.shots} ({method.selection})" if method.shots else "none (zero-shot)",
            "long sections": f"truncated ({method.truncate})",
            "output": str(default_output(job)) + " (or --output)",
            "command": f"llmscisci predict {recipe_ref}",
        }
        return cls(recipe_ref, facts)

    def as_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe_ref, "predict": self.facts}

    def as_text(self) -> str:
        width = max(len(k) for k in self.facts)
        return "== predict\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in self.facts.items())
