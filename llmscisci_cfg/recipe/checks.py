"""Cross-field checks, run when a recipe loads, before any model or data is touched.

Each check yields `Problem`s (a key path and a message naming the smallest fix); the loader
locates them in the recipe text. What a method needs (gold labels, answer pairs, answer columns
scored against gold, rewards, rollouts) is read from its section's class-level facts
(`schema.Needs`), and a method's own cross-section checks from its ``problems(recipe)``: no
check here names a method.
`machine_problems` holds the checks that depend on this machine (CUDA present or not):
`run` refuses on them, `validate --here` and `plan` report them.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator
from pathlib import Path

from llmscisci_cfg import files
from llmscisci_cfg.errors import Problem, UserError
from llmscisci_cfg.recipe.schema import Recipe, method_names
from llmscisci_cfg.resources import is_builtin, ref_path, unknown_builtin_data
from llmscisci_cfg.task.spec import TaskSpec


def recipe_problems(recipe: Recipe, task: TaskSpec | None) -> list[Problem]:
    """Every machine-independent cross-field problem of ``recipe`` (``task``: its loaded task,
    None when it failed to load; that failure is reported by the loader)."""
    found: list[Problem] = []
    for check in (
        _rewards,
        _method_own,
        _pairs,
        _gold,
        _data_tables,
        _quantization,
        _launch,
        _template,
        _builtin_model,
        _builtin_data,
        _files,
        _generation,
        _speed,
    ):
        found.extend(check(recipe))
    if task is not None:
        found.extend(_task_aspects(recipe, task))
        found.extend(_task_kind(recipe, task))
    found.extend(_reward_specs(recipe))
    return found


def _rewards(recipe: Recipe) -> Iterator[Problem]:
    method = recipe.method
    takers = " or ".join(method_names(rewards=True))
    if not method.needs.rewards and recipe.rewards:
        yield Problem(
            ("rewards",),
            f"rewards apply only to method {takers}, not {method.name}; remove the rewards section",
        )
    if method.needs.rewards and not recipe.rewards:
        yield Problem(
            ("rewards",),
            f"method {method.name} needs at least one reward; add e.g. rewards: [{{name: format}}]",
        )


def _method_own(recipe: Recipe) -> Iterator[Problem]:
    """The method section's own checks against the other sections (`schema.Needs`)."""
    own = getattr(recipe.method, "problems", None)
    if own is not None:
        yield from own(recipe)


def _pairs(recipe: Recipe) -> Iterator[Problem]:
    """Answer pairs: chosen/rejected columns, or ``data.pairs`` built from scored answers."""
    pairs, method = recipe.data.pairs, recipe.method
    if pairs is not None and not method.needs.pairs:
        yield Problem(
            ("data", "pairs"),
            f"data.pairs builds {'/'.join(n.upper() for n in method_names(pairs=True))} pairs; "
            f"remove it for method {method.name}",
        )
    if not method.needs.pairs:
        return
    cols = recipe.data.columns
    if pairs is not None:
        if cols.chosen or cols.rejected:
            yield Problem(
                ("data", "pairs"),
                "give either data.pairs or data.columns.chosen/rejected, not both",
            )
        if not recipe.data.label_columns:
            yield Problem(
                ("data", "columns", "label"),
                "data.pairs scores the answers against gold; name the label column per aspect "
                "(or data.labels)",
            )
        return
    for side in ("chosen", "rejected"):
        if not getattr(cols, side):
            yield Problem(
                ("data", "columns", side),
                f"method {method.name} needs a {side} answer column per aspect, e.g. {side}: "
                "{easy: easy_gpt_response}",
            )
    if cols.chosen and cols.rejected and set(cols.chosen) != set(cols.rejected):
        yield Problem(
            ("data", "columns", "rejected"), "chosen and rejected must name the same aspects"
        )


def _gold(recipe: Recipe) -> Iterator[Problem]:
    method = recipe.method
    if method.needs.gold and not recipe.data.label_columns:
        yield Problem(
            ("data", "columns", "label"),
            f"method {method.name} {method.needs.gold}; name the label column per aspect (or "
            "join a labels table with data.labels)",
        )


def _data_tables(recipe: Recipe) -> Iterator[Problem]:
    """One way to give the rows, one way to split them, one way to give the labels."""
    data = recipe.data
    if data.splits is not None:
        if data.source is not None:
            yield Problem(
                ("data", "splits"),
                "give data.source (one table, split by id) or data.splits (fixed split files), "
                "not both",
            )
        if "split" in data.model_fields_set:
            yield Problem(
                ("data", "split"),
                "data.split splits one table by id; with data.splits the files are the splits: "
                "remove data.split",
            )
        if not recipe.method.needs.trains:
            yield Problem(
                ("data", "splits"),
                f"{recipe.method.name} labels one table: name it with data.source (e.g. the test "
                "file)",
            )
    if data.labels is not None and data.columns.label is not None:
        yield Problem(
            ("data", "columns", "label"),
            "the labels come from data.labels (the table joined on the id): remove "
            "data.columns.label, or data.labels to read labels from the rows",
        )


def _quantization(recipe: Recipe) -> Iterator[Problem]:
    q = recipe.model.quantization
    if q is None:
        return
    if recipe.model.lora is None:
        yield Problem(
            ("model", "quantization"),
            "quantized weights cannot be trained directly; add a model.lora section (QLoRA)",
        )
    if recipe.launch.device == "cpu" and not q.allow_cpu:
        yield Problem(
            ("model", "quantization"),
            "bitsandbytes quantization on launch.device: cpu is refused; remove model.quantization "
            "or set model.quantization.allow_cpu: true",
        )


def _speed(recipe: Recipe) -> Iterator[Problem]:
    """Packing, padding-free batches, Liger and compile: what each needs from the rest."""
    m, model = recipe.method, recipe.model
    packed = getattr(m, "padding_free", False) or getattr(m, "packing", False)
    key = "packing" if getattr(m, "packing", False) else "padding_free"
    if packed and model.trust_remote_code:
        yield Problem(
            ("method", key),
            "packed/padding-free rows keep examples apart through position ids, which "
            "transformers' own model code honours but remote code (trust_remote_code) may not; "
            f"turn method.{key} off for this model",
        )
    if getattr(m, "packing", False) and m.max_length is None:
        yield Problem(
            ("method", "max_length"),
            "method.packing fills rows of method.max_length tokens; set max_length",
        )
    if recipe.train.liger_kernel and recipe.launch.device == "cpu":
        yield Problem(
            ("train", "liger_kernel"),
            "Liger's kernels are Triton kernels for CUDA; turn train.liger_kernel off on "
            "launch.device: cpu",
        )


def _launch(recipe: Recipe) -> Iterator[Problem]:
    la = recipe.launch
    if la.device == "cpu" and la.mixed_precision == "fp16":
        yield Problem(
            ("launch", "mixed_precision"),
            "fp16 needs CUDA; on launch.device: cpu use 'no' or 'auto'",
        )
    if la.device == "cpu" and la.distributed != "ddp":
        yield Problem(
            ("launch", "distributed"),
            f"{la.distributed} needs CUDA (accelerate would silently run CPU processes as plain "
            "DDP); on launch.device: cpu use ddp",
        )
    if la.distributed != "ddp" and la.num_processes == 1 and la.accelerate_config is None:
        yield Problem(
            ("launch", "distributed"),
            f"{la.distributed} needs launch.num_processes > 1; set it or use ddp",
        )


def _task_kind(recipe: Recipe, task: TaskSpec) -> Iterator[Problem]:
    """What a task's kind needs from the recipe: training only on label tasks; judges name
    their answer columns; rationales and few-shot examples need gold labels."""
    method = recipe.method
    if method.needs.trains:
        if task.kind != "label":
            labelling = " or ".join(method_names(trains=False))
            yield Problem(
                ("data", "task"),
                f"a {task.kind} task is for `llmscisci {labelling}` (method: {{name: "
                f"{labelling}}}); training needs a label task",
            )
        return
    if task.kind == "rationale" and not recipe.data.label_columns:
        yield Problem(
            ("data", "columns", "label"),
            "a rationale task explains the gold label: name the label column per aspect",
        )
    if method.shots:
        if task.kind != "label":
            yield Problem(
                ("method", "shots"), f"few-shot examples are for label tasks, not {task.kind}"
            )
        elif not recipe.data.label_columns:
            yield Problem(
                ("data", "columns", "label"),
                "method.shots needs labelled examples: name the label column per aspect (of "
                "method.pool, or of this table)",
            )
    if task.kind == "judge":
        needed = 1 if task.judge.style == "pointwise" else 2
        answers = method.answers or {}
        aspects = recipe.data.aspects or list(task.aspects)
        for aspect in aspects:
            if len(answers.get(aspect, [])) != needed:
                yield Problem(
                    ("method", "answers"),
                    f"a {task.judge.style} judge needs {needed} answer column(s) for {aspect}, "
                    f"e.g. answers: {{{aspect}: {['col_a', 'col_b'][:needed]}}}",
                )
    elif method.answers:
        yield Problem(
            ("method", "answers"), f"answer columns are judged; a {task.kind} task has none"
        )


def _task_aspects(recipe: Recipe, task: TaskSpec) -> Iterator[Problem]:
    """The recipe names only aspects its task has."""
    known = list(task.aspects)
    named = [(("data", "aspects"), recipe.data.aspects or [])]
    for key in ("text", "label", "chosen", "rejected"):
        named.append((("data", "columns", key), list(getattr(recipe.data.columns, key) or {})))
    if recipe.method.needs.scored_answers:
        named.append((("method", "answers"), list(recipe.method.answers)))
    if recipe.data.labels is not None:
        named.append((("data", "labels", "columns"), list(recipe.data.labels.columns)))
    for path, aspects in named:
        for aspect in aspects:
            if aspect not in known:
                yield Problem(
                    path,
                    f"unknown aspect {aspect!r}; the task {recipe.data.task} has {', '.join(known)}",
                )


def _template(recipe: Recipe) -> Iterator[Problem]:
    from llmscisci_cfg.models.chat import SHIPPED, TOKENIZER

    name = recipe.template.name
    if name is not None and name not in (*SHIPPED, TOKENIZER):
        close = difflib.get_close_matches(name, SHIPPED, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        yield Problem(
            ("template", "name"),
            f"unknown template {name!r}; choose one of {', '.join(SHIPPED)}, {TOKENIZER}{hint}",
        )


def _generation(recipe: Recipe) -> Iterator[Problem]:
    """Backends and the combinations known to fail, refused with the reason."""
    g, method = recipe.generation, recipe.method
    if g.backend == "openai" and not g.base_url:
        yield Problem(
            ("generation", "base_url"),
            "backend openai needs the server's URL, e.g. base_url: http://127.0.0.1:8000/v1",
        )
    if g.rollout_weights == "merged":
        yield from _merged_rollouts(recipe)
    if not method.needs.rollouts:
        return
    if g.backend == "openai":
        yield Problem(
            ("generation", "backend"),
            f"{method.name.upper()} samples from the policy it is training, not from a server; "
            "use transformers or vllm",
        )
    if g.backend == "vllm" and recipe.model.quantization is not None:
        yield Problem(
            ("generation", "backend"),
            "vLLM rollouts with a bitsandbytes-quantized policy fail in TRL 1.16 (TRL issue 4973: "
            "an assertion on packed uint8 weights); remove model.quantization (bf16 LoRA) or use "
            "backend: transformers",
        )
    if g.backend == "vllm" and g.vllm_mode == "server" and not g.base_url:
        yield Problem(
            ("generation", "base_url"),
            "vllm_mode: server needs the `trl vllm-serve` URL, e.g. base_url: http://127.0.0.1:8000",
        )
    if g.continuous_batching and g.backend != "transformers":
        yield Problem(
            ("generation", "continuous_batching"),
            "continuous batching is the transformers backend's; with vllm leave it false",
        )


def _merged_rollouts(recipe: Recipe) -> Iterator[Problem]:
    """``rollout_weights: merged`` only where the engine runs a method's rollouts (GRPO's) from
    a LoRA policy (elsewhere it would be silently ignored)."""
    g, key = recipe.generation, ("generation", "rollout_weights")
    if not recipe.method.needs.rollouts:
        takers = " or ".join(n.upper() for n in method_names(rollouts=True))
        yield Problem(key, f"merged is for {takers}'s rollouts; remove it (or set policy)")
    elif recipe.model.lora is None:
        yield Problem(key, "merged needs model.lora: a full fine-tune has no adapter to merge")
    elif g.backend != "transformers" or g.continuous_batching:
        yield Problem(
            key, "merged is the llmscisci engine's; it needs backend: transformers without "
            "continuous_batching",
        )  # fmt: skip
    elif g.compile == "off":
        yield Problem(key, "merged copies exist to be compiled; with compile: off set policy")
    elif recipe.launch.distributed != "ddp":
        yield Problem(
            key, f"{recipe.launch.distributed} shards the weights, so TRL's generate runs the "
            "rollouts; set policy",
        )  # fmt: skip


def _builtin_model(recipe: Recipe) -> Iterator[Problem]:
    """A ``builtin:`` model name must be one the package ships."""
    from llmscisci_cfg.models import tiny

    name = recipe.model.name_or_path
    if tiny.is_builtin(name) and name[len(tiny.PREFIX) :] not in tiny.SHAPES:
        close = difflib.get_close_matches(name, tiny.builtin_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        yield Problem(
            ("model", "name_or_path"),
            f"unknown built-in model {name!r}{hint}; available: {', '.join(tiny.builtin_names())}",
        )


def _builtin_data(recipe: Recipe) -> Iterator[Problem]:
    """A ``builtin:`` data name must be one the package ships (the files themselves are read
    later, by the data stage); a field that takes only a path takes no ``builtin:`` name."""
    data = recipe.data
    named = [
        (("data", "source", "path"), data.source.path if data.source else None),
        (("data", "traces", "path"), data.traces.path if data.traces else None),
        (("data", "labels", "path"), data.labels.path if data.labels else None),
    ]
    named += [
        (("data", "splits", n), p) for n, p in (data.splits.files() if data.splits else {}).items()
    ]
    for key, value in named:
        problem = unknown_builtin_data(value) if value is not None else None
        if problem:
            yield Problem(key, problem)
    pool = getattr(recipe.method, "pool", None)
    if pool is not None and is_builtin(pool):
        yield Problem(
            ("method", "pool"),
            f"{pool}: method.pool takes a table path (recipe-relative), not a builtin: name; "
            "null uses this table's labelled rows",
        )


def _files(recipe: Recipe) -> Iterator[Problem]:
    """Files that are part of the recipe artifact itself must exist (data files need not, yet)."""
    for path, value in (
        (("template", "file"), recipe.template.file),
        (("launch", "accelerate_config"), recipe.launch.accelerate_config),
    ):
        if value is None:
            continue
        file = ref_path(value, recipe.source_dir)
        if not file.exists():
            yield Problem(path, f"file not found: {file}")
        elif not file.is_file() or file.stat().st_size > files.TEXT_LIMIT:
            try:
                files.check_regular(file, ".".join(path), files.TEXT_LIMIT)
            except UserError as exc:
                yield Problem(path, str(exc))


def _reward_specs(recipe: Recipe) -> list[Problem]:
    if not recipe.rewards:
        return []
    found: list[Problem] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(recipe.rewards):
        if not math.isfinite(spec.weight):
            found.append(Problem(("rewards", i, "weight"), "weight must be a finite number"))
        if spec.label in seen:
            found.append(
                Problem(
                    ("rewards", i, "name"),
                    f"{spec.label!r} is listed twice (also rewards[{seen[spec.label]}]); "
                    "give one an alias so their metrics do not clash",
                )
            )
        seen.setdefault(spec.label, i)
    if all(spec.weight == 0 for spec in recipe.rewards):
        found.append(
            Problem(
                ("rewards",),
                f"every reward weight is 0; {recipe.method.name.upper()} would learn nothing",
            )
        )
    from llmscisci_cfg.rewards.registry import BUILTINS, check_specs

    if not recipe.data.label_columns:
        for i, spec in enumerate(recipe.rewards):
            if spec.name in BUILTINS and "gold" in BUILTINS[spec.name].reads:
                found.append(
                    Problem(
                        ("rewards", i, "name"),
                        f"{spec.name} reads the gold label; set data.columns.label",
                    )
                )
    found.extend(check_specs(recipe.rewards, recipe.source_dir))
    return found


def cuda_present() -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def machine_problems(recipe: Recipe, cuda: bool | None = None) -> list[Problem]:
    """Problems that depend on this machine: what `run` would refuse here."""
    cuda = cuda_present() if cuda is None else cuda
    found = _missing_packages(recipe, cuda)
    if cuda:
        return found
    la = recipe.launch
    if la.device == "cuda":
        found.append(
            Problem(
                ("launch", "device"), "launch.device is cuda but no CUDA device is visible here"
            )
        )
    q = recipe.model.quantization
    if q is not None and not q.allow_cpu and la.device != "cpu":
        found.append(
            Problem(
                ("model", "quantization"),
                "no CUDA device here: bitsandbytes quantization is refused on CPU; "
                "run on a GPU, or set model.quantization.allow_cpu: true (slow)",
            )
        )
    if la.distributed != "ddp" and la.num_processes > 1:
        found.append(
            Problem(
                ("launch", "distributed"),
                f"{la.distributed} needs CUDA, which is not visible here (accelerate would silently "
                "run CPU processes as plain DDP); use launch.distributed: ddp on CPU",
            )
        )
    g = recipe.generation
    if recipe.method.needs.rollouts and g.rollout_weights == "merged" and g.compile == "auto":
        found.append(
            Problem(
                ("generation", "rollout_weights"),
                "merged rollouts decode through the compiled engine, which compile: auto uses on "
                "CUDA only; without CUDA here TRL's generate would run them and ignore the copy; "
                "set generation.compile: on (eager on CPU) or rollout_weights: policy",
            )
        )
    return found


def _missing_packages(recipe: Recipe, cuda: bool) -> list[Problem]:
    """Optional packages a recipe's speed options need (looked up, not imported)."""
    import importlib.util

    found: list[Problem] = []
    if recipe.train.liger_kernel:
        if importlib.util.find_spec("liger_kernel") is None:
            found.append(
                Problem(
                    ("train", "liger_kernel"),
                    "liger-kernel is not installed here; `pip install liger-kernel` or turn "
                    "train.liger_kernel off",
                )
            )
        elif not cuda:
            found.append(
                Problem(
                    ("train", "liger_kernel"),
                    "no CUDA device here: Liger's Triton kernels need one; turn "
                    "train.liger_kernel off",
                )
            )
    if recipe.model.attn_implementation == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            found.append(
                Problem(
                    ("model", "attn_implementation"),
                    "flash_attention_2 needs the flash-attn package, not installed here; "
                    "`pip install flash-attn` or use sdpa",
                )
            )
        elif not cuda:
            found.append(
                Problem(
                    ("model", "attn_implementation"),
                    "flash_attention_2 needs a CUDA device; use sdpa here",
                )
            )
    return found
