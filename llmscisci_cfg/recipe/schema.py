"""The recipe schema: one Pydantic model per YAML section.

Every model forbids unknown keys and documents every field; the descriptions feed
the JSON Schema (``llmscisci schema``), editor completion and error messages.
Checks that involve several sections live in `llmscisci_cfg.recipe.checks`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)

from llmscisci_cfg.errors import Problem

RECIPE_VERSION = 1


def _not_bool(value: Any) -> Any:
    """YAML's ``true`` is not the number 1 here (``max_steps: true`` is a mistake)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not the boolean {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
#: Counts and sizes fit a 32-bit signed int, as the trainers and numpy expect.
INT_MAX = 2**31 - 1
PosInt = Annotated[Int, Field(ge=1, le=INT_MAX)]
NonNegInt = Annotated[Int, Field(ge=0, le=INT_MAX)]
#: Seeds go to numpy, which takes 0 … 2**32 - 1.
Seed = Annotated[Int, Field(ge=0, le=2**32 - 1)]
Probability = Annotated[Float, Field(ge=0.0, le=1.0)]
PosFloat = Annotated[Float, Field(gt=0.0)]


@dataclass(frozen=True)
class RecipePath:
    """Marks a field whose value names a file, folder or model relative to the recipe.

    ``kind`` says how `llmscisci_cfg.recipe.resolve.absolute_value` makes it absolute:
    ``file`` (a recipe-relative path), ``data`` and ``task`` (also ``builtin:NAME``),
    ``model`` (only when it is a local folder), ``plugin`` (only the ``file.py`` of a
    ``file.py:function`` reward).
    """

    kind: Literal["file", "data", "task", "model", "plugin"]


FilePath = Annotated[str, RecipePath("file")]


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are re-checked on
    assignment, numbers are finite, and ``true``/``false`` are not numbers."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        use_attribute_docstrings=False,
        allow_inf_nan=False,
    )


# ----------------------------------------------------------------------------- model


class Quantization(Section):
    bits: Literal[4, 8] = Field(
        4, description="Load the base weights in 4-bit or 8-bit through bitsandbytes."
    )
    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type (QLoRA uses nf4)."
    )
    double_quant: bool = Field(
        True, description="Quantize the quantization constants too (saves ~0.4 bit/param)."
    )
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Dtype of the matmuls on dequantized weights."
    )
    allow_cpu: bool = Field(
        False,
        description="Allow bitsandbytes quantization without CUDA (slow; for tests). Without it a CPU run is refused.",
    )


class Lora(Section):
    r: PosInt = Field(8, description="LoRA rank.")
    alpha: PosFloat = Field(16, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: Probability = Field(0.05, description="Dropout on the LoRA input.")
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear",
        description="Modules to adapt: 'all-linear' or a list of module-name suffixes.",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases to train.")

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("list is empty; use 'all-linear' or name at least one module")
        return v


Family = Literal["llama3", "gemma3", "qwen2", "tiny", "other"]


class ModelSpec(Section):
    name_or_path: Annotated[str, RecipePath("model")] = Field(
        ...,
        min_length=1,
        description="A hub id (google/gemma-3-1b-it), a local directory, or builtin:tiny for the shipped tiny model.",
    )
    family: Family | None = Field(
        None,
        description="Model family; picks the default chat template. Inferred from name_or_path when omitted.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weight dtype when not quantized. 'auto' is bfloat16 on CUDA, float32 on CPU.",
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None, description="Attention kernel; None lets transformers choose."
    )
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with the checkpoint. Off unless you trust it."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    quantization: Quantization | None = Field(
        None, description="bitsandbytes quantization of the base weights (QLoRA)."
    )
    lora: Lora | None = Field(None, description="Train a LoRA adapter instead of all weights.")


class TemplateSpec(Section):
    name: str | None = Field(
        None,
        description="A shipped template (llama3, gemma3, chatml, tiny) or 'tokenizer' for the model's own. "
        "Defaults to the model family's template.",
    )
    file: FilePath | None = Field(
        None, description="A Jinja chat-template file, relative to the recipe."
    )
    override: bool = Field(
        False,
        description="Generate with this template even when the model is a run directory or a "
        "model folder saved with its own (eval, predict, serve use the model's own by default, "
        "with a warning when the recipe names another).",
    )

    @model_validator(mode="after")
    def _one_of(self):
        if self.name is not None and self.file is not None:
            raise ValueError("give either 'name' or 'file', not both")
        return self


# ----------------------------------------------------------------------------- data


class SourceSpec(Section):
    path: Annotated[str, RecipePath("data")] = Field(
        ...,
        min_length=1,
        description="Data file or save_to_disk directory (relative to the recipe), or builtin:sample for the shipped sample.",
    )
    format: Literal["auto", "csv", "json", "parquet", "disk"] = Field(
        "auto",
        description="File format; 'auto' decides from the extension (.csv, .json/.jsonl, .parquet, directory).",
    )


class Columns(Section):
    id: str = Field(
        "doi", description="Column holding the document id; both aspects of a document share it."
    )
    text: dict[str, str] | None = Field(
        None,
        description="Section-text column per aspect, e.g. {easy: easy, difficult: difficult}. Defaults from the task.",
    )
    label: dict[str, str] | None = Field(
        None,
        description="Gold-label column per aspect, e.g. {easy: y_easy_gpt4}. Needed by SFT and label rewards.",
    )
    chosen: dict[str, str] | None = Field(
        None, description="DPO: column per aspect with the preferred answer."
    )
    rejected: dict[str, str] | None = Field(
        None, description="DPO: column per aspect with the dispreferred answer."
    )


class TraceSpec(Section):
    path: Annotated[str, RecipePath("data")] = Field(
        ...,
        description="JSONL of reasoning traces, relative to the recipe, or builtin:sample_traces.",
    )
    id_key: str = Field("id", description="Key holding the document id.")
    aspect_key: str = Field("aspect", description="Key holding the aspect name.")
    text_key: str = Field("trace", description="Key holding the trace text.")
    missing: Literal["drop", "empty"] = Field(
        "drop",
        description="An example without a trace is dropped (counted) or gets an empty think block.",
    )


class SplitFiles(Section):
    """Fixed split files, as a study ships them: every file has the source's columns."""

    train: Annotated[str, RecipePath("data")] = Field(
        ...,
        min_length=1,
        description="The training rows: a CSV, JSON(L) or Parquet file (or save_to_disk folder), "
        "relative to the recipe.",
    )
    validation: Annotated[str, RecipePath("data")] | None = Field(
        None,
        description="Rows TRL evaluates on during training (train.eval_steps) and `llmscisci "
        "eval --split validation` reads; null: none.",
    )
    test: Annotated[str, RecipePath("data")] | None = Field(
        None,
        description="The held-out rows `llmscisci eval` scores; null: an empty test split.",
    )
    format: Literal["auto", "csv", "json", "parquet", "disk"] = Field(
        "auto", description="File format of every split file; 'auto' decides from each extension."
    )

    def files(self) -> dict[str, str]:
        """``{split name: path}`` of the files given, in the order train, validation, test."""
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: path for name, path in named.items() if path is not None}


class LabelsSpec(Section):
    """Gold labels kept in a second table, joined to the rows on the document id."""

    path: Annotated[str, RecipePath("data")] = Field(
        ...,
        min_length=1,
        description="The labels table (CSV, JSON(L), Parquet), relative to the recipe; one row "
        "per id.",
    )
    id: str = Field(
        "id",
        min_length=1,
        description="The labels table's id column, matched against data.columns.id of the rows.",
    )
    columns: dict[str, str] = Field(
        ...,
        description="Gold-label column of the labels table per aspect, e.g. {tweet: answer}; "
        "decoded with the task's answer kind.",
    )
    format: Literal["auto", "csv", "json", "parquet"] = Field(
        "auto", description="File format; 'auto' decides from the extension."
    )

    @field_validator("columns")
    @classmethod
    def _not_empty(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("name the label column of at least one aspect")
        return v


class SplitSpec(Section):
    test_fraction: Annotated[Float, Field(gt=0.0, lt=1.0)] = Field(
        0.2, description="Fraction of documents held out for evaluation."
    )
    seed: Seed | None = Field(
        None, description="Seed of the document shuffle; defaults to train.seed."
    )


class LengthFilter(Section):
    percentile: Annotated[Float, Field(gt=0.0, le=100.0)] | None = Field(
        95.0,
        description="Limit examples to this percentile of prompt tokens and of prompt+completion tokens on train (see strategy).",
    )
    max_prompt_tokens: PosInt | None = Field(
        None, description="Absolute prompt-token limit (overrides the percentile)."
    )
    max_total_tokens: PosInt | None = Field(
        None, description="Absolute prompt+completion token limit (overrides the percentile)."
    )
    strategy: Literal["drop", "truncate"] = Field(
        "drop",
        description="What happens to an example over the limit: dropped (counted; a test "
        "example is reported as excluded), or its section cut to fit by `truncate` (counted).",
    )
    truncate: Literal["head", "tail", "head_tail"] = Field(
        "head_tail",
        description="strategy truncate: which part of an over-long section is kept: its start, "
        "its end, or both around a ' […] ' marker (the mechanism `predict` uses).",
    )


class CleanSpec(Section):
    """Repairs of scraped section text (`llmscisci_cfg.data.clean`); every step on by default."""

    unicode: bool = Field(
        True,
        description="NFKC; hyphen and quote variants (U+2010, curly quotes) to ASCII; ligatures, "
        "odd spaces and zero-width characters.",
    )
    strip_boilerplate: bool = Field(
        True,
        description="Drop copyright/licence/journal lines, page numbers and lines repeated "
        "3 or more times (running headers).",
    )
    dehyphenate: bool = Field(
        True,
        description="Rejoin words broken at a line end or as 'pre‐ trained'; keep real compounds "
        "('state-of-the-art', 'GPT-2').",
    )
    cut_at_heading: bool = Field(
        True,
        description="End the section at the next heading of the paper ('References', "
        "'Communication with original authors', '3 Results'); never empties a section.",
    )
    collapse_whitespace: bool = Field(
        True, description="Runs of spaces to one space, runs of blank lines to one newline."
    )
    extra_headings: list[str] = Field(
        default_factory=list,
        description="More headings to cut at, besides the built-in list (case-insensitive, "
        "whole words), e.g. [Limitations].",
    )


class PairsSpec(Section):
    """DPO pairs from several models' answers (prediction columns) scored against gold."""

    answers: dict[str, list[str]] = Field(
        ...,
        description="Per aspect, two or more answer columns, e.g. {easy: [easy_gpt4_raw, "
        "easy_llama_raw]}; the best-scoring one is chosen, the worst rejected.",
    )
    choose_by: Literal["hamming_to_gold", "exact_match"] = Field(
        "hamming_to_gold",
        description="How answers are scored against the gold label (an invalid answer scores "
        "lowest); ties and identical answers are dropped and counted.",
    )

    @field_validator("answers")
    @classmethod
    def _two_or_more(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        few = [a for a, cols in v.items() if len(set(cols)) < 2]
        if few:
            raise ValueError(f"name at least two different answer columns for {', '.join(few)}")
        return v


class TaskOverride(Section):
    system_prompt: str | None = Field(None, description="Replace the task's system prompt (Jinja).")
    user_prompt: str | None = Field(None, description="Replace the task's user prompt (Jinja).")
    categories: dict[str, list[str]] | None = Field(
        None, description="Replace the ordered category list of an aspect, e.g. {difficult: [...]}."
    )
    codes: dict[str, dict[str, str]] | None = Field(
        None,
        description="Replace an aspect's human-code mapping, e.g. {difficult: {'1': 'Unclear notation ...'}}.",
    )
    constraints: dict[str, Any] | None = Field(
        None,
        description="Replace the task's label constraints, e.g. {exclusive: [3], min_positive: 1}; "
        "{} for none (needed when replaced categories no longer have the codes they name).",
    )


class DataSpec(Section):
    task: Annotated[str, RecipePath("task")] = Field(
        "builtin:repro_effort",
        description="Task definition: builtin:NAME or a task YAML file relative to the recipe.",
    )
    task_overrides: TaskOverride | None = Field(
        None, description="Replace parts of the task definition."
    )
    source: SourceSpec | None = Field(
        None,
        description="The table of rows, split by document id (data.split); or give data.splits.",
    )
    splits: SplitFiles | None = Field(
        None,
        description="Fixed split files {train, validation, test} instead of data.source and the "
        "id-based data.split.",
    )
    labels: LabelsSpec | None = Field(
        None,
        description="Gold labels from a second table joined on the id (instead of "
        "data.columns.label); rows without a label are left out of training and counted, and "
        "stay in the table `predict` labels.",
    )
    columns: Columns = Field(default_factory=Columns, description="Column names in the source.")
    aspects: list[str] | None = Field(
        None, description="Aspects to build examples for; defaults to all of the task's."
    )
    label_codec: Literal["auto", "onehot", "codes", "list"] = Field(
        "auto",
        description="How gold labels are written: one-hot string '[1, 0, 1, 0, 0]', human codes '1, 3', or a real list.",
    )
    on_bad_label: Literal["error", "drop"] = Field(
        "error",
        description="A malformed label stops with an error naming the row, or the example is dropped and counted.",
    )
    traces: TraceSpec | None = Field(
        None, description="SFT: reasoning traces written into the think block."
    )
    pairs: PairsSpec | None = Field(
        None,
        description="DPO: build chosen/rejected from several answer columns scored against gold, "
        "instead of data.columns.chosen/rejected.",
    )
    split: SplitSpec = Field(default_factory=SplitSpec, description="Train/test split by document.")
    length_filter: LengthFilter | None = Field(
        default_factory=LengthFilter,
        description="Drop or truncate over-long examples (counted); null keeps everything.",
    )
    clean: CleanSpec | None = Field(
        None,
        description="Clean the section text (unicode, boilerplate, hyphenation, run-on sections, "
        "whitespace) identically for training, eval and predict; null (default) reads it as "
        "written, {} turns every step on.",
    )
    cache_dir: FilePath | None = Field(
        None,
        description="Where built datasets are cached; defaults to ~/.cache/llmscisci (or $LLMSCISCI_CACHE).",
    )

    @model_validator(mode="after")
    def _one_table(self):
        if self.source is None and self.splits is None:
            raise ValueError(
                "give the rows: data.source (one table, split by id) or data.splits (fixed "
                "train/validation/test files)"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_unused_split(self, handler: Any) -> dict[str, Any]:
        """With split files the id-based ``split`` is not used (and the checks refuse it when
        given): a resolved recipe leaves its default out, so the run's own recipe loads again."""
        out = handler(self)
        if self.splits is not None:
            out.pop("split", None)
        return out

    @property
    def label_columns(self) -> dict[str, str] | None:
        """The gold-label column per aspect: ``data.labels.columns`` (of the labels table) or
        ``data.columns.label`` (of the rows); None for unlabelled data."""
        return self.labels.columns if self.labels is not None else self.columns.label

    @field_validator("aspects")
    @classmethod
    def _aspects_unique(cls, v):
        if v is not None:
            if not v:
                raise ValueError("list is empty; name at least one aspect or leave it out")
            if len(set(v)) != len(v):
                raise ValueError("aspects repeat")
        return v


# ----------------------------------------------------------------------------- method


@dataclass(frozen=True)
class Needs:
    """What a method needs from the rest of the recipe, as class-level facts (``needs``) on
    each method section. The load-time checks (`llmscisci_cfg.recipe.checks`) and the data
    stage read these facts instead of method names, so a new method's checks come with its
    schema entry. A section may also define ``problems(recipe)`` for checks of its own that
    involve other sections (GRPO's group size and batch, KTO's batch of two)."""

    trains: bool = True  # `llmscisci run` trains it (predict: it labels a table)
    gold: str | None = None  # it needs gold labels: what it does with them (for the message)
    rewards: bool = False  # it takes, and needs, a reward stack (rewards:)
    pairs: bool = False  # chosen/rejected answers: data.columns.chosen/rejected or data.pairs
    scored_answers: bool = False  # method.answers: answer columns it scores against gold
    traces: bool = False  # it writes data.traces into its completions
    rollouts: bool = False  # it samples completions from the policy while training
    repeated_ids: bool = False  # several rows of one document are usual (no warning)
    row_keys: tuple[str, ...] = ()  # its own keys that shape the built rows (dataset cache key)


class SFTMethod(Section):
    needs: ClassVar[Needs] = Needs(gold="writes the gold label into each completion", traces=True)

    name: Literal["sft"] = Field(
        description="Supervised fine-tuning on prompt + reasoning + label completions."
    )
    max_length: PosInt | None = Field(
        1024, description="Truncate tokenized examples to this length (TRL's max_length)."
    )
    assistant_only_loss: bool = Field(
        True, description="Train only on assistant tokens (template {% generation %} masks)."
    )
    packing: bool = Field(
        False,
        description="Pack whole examples into max_length rows (TRL's best-fit-decreasing "
        "packing: no example is cut, attention stays within each example).",
    )
    padding_free: bool = Field(
        False,
        description="Concatenate each batch into one row without padding (position ids keep "
        "examples apart); packing implies it.",
    )

    def problems(self, recipe: Recipe) -> Iterator[Problem]:
        if self.padding_free and not self.packing and self.max_length is not None:
            yield Problem(
                ("method", "padding_free"),
                "padding-free rows without packing are not cut at max_length (TRL refuses the "
                "pair); set method.max_length: null (the length filter bounds the prompts) or "
                "packing: true",
            )


class DPOMethod(Section):
    needs: ClassVar[Needs] = Needs(pairs=True, repeated_ids=True)

    name: Literal["dpo"] = Field(
        description="Direct preference optimisation on chosen/rejected answers."
    )
    beta: PosFloat = Field(0.1, description="Strength of the implicit KL penalty.")
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust", "bco_pair", "apo_zero", "apo_down"] = (
        Field("sigmoid", description="DPO loss variant.")
    )
    label_smoothing: Annotated[Float, Field(ge=0.0, lt=0.5)] = Field(
        0.0, description="Robust-DPO label noise."
    )
    max_length: PosInt | None = Field(
        1024, description="Truncate prompt+answer to this many tokens."
    )
    padding_free: bool = Field(
        False,
        description="Concatenate each batch into one row without padding (position ids keep "
        "examples apart).",
    )


GRPOLoss = Literal["grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo"]


class GRPOMethod(Section):
    needs: ClassVar[Needs] = Needs(rewards=True, rollouts=True)

    name: Literal["grpo"] = Field(
        description="Group relative policy optimisation with the recipe's rewards."
    )
    num_generations: Annotated[Int, Field(ge=2, le=INT_MAX)] = Field(
        4, description="Completions sampled per prompt (the group)."
    )
    max_completion_length: PosInt = Field(256, description="Tokens generated per completion.")
    temperature: PosFloat = Field(1.0, description="Sampling temperature.")
    top_p: Annotated[Float, Field(gt=0.0, le=1.0)] = Field(
        1.0, description="Nucleus sampling mass."
    )
    beta: Annotated[Float, Field(ge=0.0)] = Field(
        0.0, description="KL weight to the reference model; 0 skips loading a reference model."
    )
    epsilon: PosFloat = Field(0.2, description="PPO clip range.")
    loss_type: GRPOLoss = Field(
        "dapo", description="Loss normalisation (TRL loss_type); unknown names are rejected."
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group",
        description="Divide advantages by the reward std of the group, of the batch, or not at all.",
    )
    num_iterations: PosInt = Field(1, description="Optimisation passes per generation batch (mu).")
    log_completions: bool = Field(False, description="Log sampled completions each logging step.")

    def problems(self, recipe: Recipe) -> Iterator[Problem]:
        """The group must divide the completions of an optimizer step, over every process."""
        t, p = recipe.train, recipe.launch.num_processes
        b, g, n = t.per_device_batch_size, t.gradient_accumulation_steps, self.num_generations
        if (b * g * p) % n == 0:
            return
        factors = "per_device_batch_size × gradient_accumulation_steps" + (
            " × num_processes" if p > 1 else ""
        )
        fix_g = next(k for k in range(g + 1, g + n + 1) if (b * k * p) % n == 0)
        fix_b = next(k for k in range(b + 1, b + n + 1) if (k * g * p) % n == 0)
        smallest = (
            f"gradient_accumulation_steps: {fix_g}"
            if fix_g - g <= fix_b - b
            else f"per_device_batch_size: {fix_b}"
        )
        yield Problem(
            ("method", "num_generations"),
            f"num_generations ({n}) must divide {factors} ({b * g * p}); smallest fix: {smallest}",
        )


class KTOMethod(Section):
    needs: ClassVar[Needs] = Needs(
        gold="scores each answer against it", scored_answers=True, row_keys=("answers",)
    )

    name: Literal["kto"] = Field(
        description="Kahneman-Tversky optimisation (TRL's KTOTrainer) on unpaired answers, each "
        "marked desirable or undesirable by scoring it against the gold label."
    )
    answers: dict[str, list[str]] = Field(
        ...,
        description="Per aspect, the answer columns to learn from (other models' responses), "
        "e.g. {easy: [easy_gpt_response, easy_llama3_response]}. Each non-empty answer is one "
        "training example: desirable when its label equals the gold label exactly (the task's "
        "answer kind reads it), undesirable otherwise (a wrong label, or none that parses or "
        "keeps the task's label constraints); an empty answer is dropped and counted "
        "(empty_answer). A held-out example is one row (its first non-empty answer): eval reads "
        "its prompt and gold. `preprocess` counts the desirable and undesirable rows.",
    )
    beta: PosFloat = Field(
        0.1, description="Strength of the implicit KL penalty to the reference model."
    )
    loss_type: Literal["kto", "apo_zero_unpaired"] = Field(
        "kto",
        description="kto estimates a KL term from the batch's other answers (a batch of 2 or "
        "more); apo_zero_unpaired has none.",
    )
    desirable_weight: PosFloat = Field(
        1.0, description="Weight of the desirable examples' loss (to balance unequal counts)."
    )
    undesirable_weight: PosFloat = Field(
        1.0, description="Weight of the undesirable examples' loss (to balance unequal counts)."
    )
    max_length: PosInt | None = Field(
        1024, description="Truncate prompt+answer to this many tokens."
    )

    @field_validator("answers")
    @classmethod
    def _some_columns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        if not v:
            raise ValueError("name the answer columns of at least one aspect")
        empty = [a for a, cols in v.items() if not cols]
        if empty:
            raise ValueError(f"name at least one answer column for {', '.join(empty)}")
        repeated = [a for a, cols in v.items() if len(set(cols)) != len(cols)]
        if repeated:
            raise ValueError(f"an answer column repeats for {', '.join(repeated)}")
        return v

    def problems(self, recipe: Recipe) -> Iterator[Problem]:
        """TRL's KL term pairs each example with another answer of its batch (TRL refuses a
        batch of one)."""
        b = recipe.train.per_device_batch_size
        if self.loss_type == "kto" and b < 2:
            yield Problem(
                ("train", "per_device_batch_size"),
                f"loss_type kto estimates its KL term from the other answers of a batch, so "
                f"per_device_batch_size ({b}) must be at least 2; smallest fix: "
                "per_device_batch_size: 2 (or method.loss_type: apo_zero_unpaired)",
            )


class PredictMethod(Section):
    needs: ClassVar[Needs] = Needs(trains=False)

    name: Literal["predict"] = Field(
        description="Label, extract, judge or write rationales over a whole table with a model "
        "(`llmscisci predict`); nothing is trained."
    )
    shots: NonNegInt = Field(
        0, description="label tasks: worked examples shown before each section (few-shot)."
    )
    pool: FilePath | None = Field(
        None,
        description="Few-shot examples: a labelled table (recipe-relative; its label columns are "
        "data.columns.label), or null for this table's labelled rows (never the row itself).",
    )
    selection: Literal["random", "stratified"] = Field(
        "random",
        description="How shots are drawn: seeded random, or stratified so the categories present "
        "in the pool are covered in turn.",
    )
    answers: dict[str, list[str]] | None = Field(
        None,
        description="judge tasks: per aspect, the answer column judged (pointwise) or the two "
        "compared (pairwise), e.g. {easy: [easy_gpt4, easy_llama]}.",
    )
    max_prompt_tokens: PosInt | None = Field(
        None,
        description="Longest prompt, in tokens; longer sections are truncated by `truncate` and "
        "counted (default: the model's context minus max_new_tokens).",
    )
    truncate: Literal["head", "tail", "head_tail"] = Field(
        "head_tail",
        description="Which part of an over-long section is kept: its start, its end, or both "
        "with a ' […] ' marker.",
    )
    output_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]*$", max_length=64)] = Field(
        "",
        description="Prefix of the columns this prediction adds (<prefix><aspect>_pred, _raw, "
        "_reason, _truncated, _shots), e.g. 'judge_' when judging a table that already holds "
        "predictions. A clash with an input column is refused, never overwritten.",
    )
    rows: Literal["all", "labelled"] = Field(
        "all",
        description="The rows predicted: every row of the table, or only those with a gold label "
        "for at least one aspect (a data.columns.label cell, or a data.labels match): a run to "
        "score pays for no unlabelled row. The output holds the rows predicted.",
    )

    def problems(self, recipe: Recipe) -> Iterator[Problem]:
        """Only a table with gold labels has labelled rows."""
        if self.rows == "labelled" and not recipe.data.label_columns:
            yield Problem(
                ("method", "rows"),
                "rows: labelled predicts the rows with a gold label, but the recipe names no "
                "label column; set data.columns.label (or data.labels), or rows: all",
            )


#: Every method section, in the order the JSON Schema and messages list them.
METHODS = (SFTMethod, DPOMethod, GRPOMethod, KTOMethod, PredictMethod)
Method = Annotated[Union[METHODS], Field(discriminator="name")]  # noqa: UP007


def method_names(**needs: Any) -> list[str]:
    """The names of the methods whose `Needs` have these values, e.g. ``rewards=True``."""
    return [
        m.model_fields["name"].annotation.__args__[0]
        for m in METHODS
        if all(getattr(m.needs, k) == v for k, v in needs.items())
    ]


class RewardSpec(Section):
    name: Annotated[str, RecipePath("plugin")] = Field(
        ...,
        min_length=1,
        description="A built-in reward (see `llmscisci rewards list`), package.module:function, or path/to/file.py:function.",
    )
    weight: Float = Field(1.0, description="Weight in the total reward (TRL reward_weights).")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments bound to the function."
    )
    alias: str | None = Field(
        None, description="Name shown in metrics; needed when one reward is listed twice."
    )

    @property
    def label(self) -> str:
        return self.alias or self.name.rsplit(":", 1)[-1]


# ----------------------------------------------------------------------------- train / launch


class TrainSpec(Section):
    output_dir: str = Field(
        "runs/{name}", description="Run directory; {name} is the recipe name. Relative to the cwd."
    )

    @field_validator("output_dir")
    @classmethod
    def _only_name_placeholder(cls, value: str) -> str:
        other = sorted(set(re.findall(r"\{[^{}]*\}", value)) - {"{name}"})
        if other:
            raise ValueError(f"unknown placeholder {', '.join(other)}; the only one is {{name}}")
        return value

    per_device_batch_size: PosInt = Field(
        4, description="Examples (GRPO: completions) per device per step."
    )
    gradient_accumulation_steps: PosInt = Field(
        1, description="Micro-batches accumulated per optimizer step."
    )
    learning_rate: PosFloat = Field(2e-5, description="Peak learning rate.")
    num_epochs: PosFloat = Field(
        1.0, description="Passes over the train split (ignored when max_steps is set)."
    )
    max_steps: PosInt | None = Field(None, description="Stop after this many optimizer steps.")
    lr_scheduler: Literal[
        "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"
    ] = Field("linear", description="Learning-rate schedule.")
    warmup_ratio: Annotated[Float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, description="Fraction of steps spent warming up (0 ≤ x < 1)."
    )
    weight_decay: Annotated[Float, Field(ge=0.0)] = Field(0.0, description="AdamW weight decay.")
    max_grad_norm: PosFloat = Field(1.0, description="Gradient clipping norm.")
    optim: Literal[
        "adamw_torch",
        "adamw_torch_fused",
        "adamw_8bit",
        "paged_adamw_8bit",
        "paged_adamw_32bit",
        "adafactor",
        "sgd",
    ] = Field(
        "adamw_torch",
        description="Optimizer; adamw_8bit and the paged ones are bitsandbytes' (CUDA): 8-bit "
        "states take a quarter of the memory, paged states move to CPU under memory pressure.",
    )
    logging_steps: PosInt = Field(1, description="Log metrics every N optimizer steps.")
    save_steps: PosInt | None = Field(
        None, description="Checkpoint every N steps; None saves at each epoch end."
    )
    save_total_limit: PosInt | None = Field(2, description="Keep at most this many checkpoints.")
    eval_steps: PosInt | None = Field(
        None, description="Evaluate on the test split every N steps; None never."
    )
    seed: Seed = Field(
        42, description="Seed for weights init (builtin models), shuffling and sampling."
    )
    report_to: list[Literal["none", "tensorboard", "wandb", "trackio", "mlflow"]] = Field(
        default_factory=lambda: ["none"],
        description="Experiment trackers; metrics.jsonl is always written.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, ~30% more time; "
        "GRPO rollouts still use the KV cache (it is switched off while generating).",
    )
    liger_kernel: bool = Field(
        False,
        description="Liger's fused Triton kernels for RMSNorm, RoPE and the gated MLP (CUDA, "
        "`pip install liger-kernel`). The loss never materialises full-vocabulary logits either "
        "way: TRL 1.16 computes log-probabilities in chunks from the hidden states.",
    )
    torch_compile: bool = Field(
        False, description="torch.compile the model for training (first steps are slower)."
    )


class GenerationSpec(Section):
    """How this recipe generates: eval and predict through the engine, GRPO's rollouts through
    TRL's own switches."""

    backend: Literal["transformers", "openai", "vllm"] = Field(
        "transformers",
        description="transformers: a local model; openai: any OpenAI-compatible server "
        "(vllm serve, SGLang, Ollama, llama.cpp, hosted APIs, llmscisci serve); vllm: vLLM "
        "in-process (predict) or TRL's vLLM rollouts (GRPO).",
    )
    base_url: str | None = Field(
        None, description="openai: the server's URL, e.g. http://127.0.0.1:8000/v1."
    )

    @field_validator("base_url")
    @classmethod
    def _a_usable_url(cls, value: str | None) -> str | None:
        """Refuse what an HTTP client cannot open, when the recipe loads (not at the first
        request): ``http://[::1``, no scheme, another scheme, no host, a bad port, spaces."""
        if value is None:
            return value
        from urllib.parse import urlsplit

        example = "write it as http://HOST:PORT/v1, e.g. http://127.0.0.1:8000/v1"
        if any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"spaces or control characters in the URL; {example}")
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc}); {example}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"not an http:// or https:// URL; {example}")
        if not parts.hostname:
            raise ValueError(f"no host in the URL; {example}")
        if port == 0:
            raise ValueError(f"port 0 is no server's; {example}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "a user or password in the URL would be written wherever the recipe goes; put "
                "the key in an environment variable and name it with api_key_env"
            )
        return value

    model: str | None = Field(
        None, description="openai: the served model's name (default: model.name_or_path)."
    )
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = Field(
        None,
        description="openai: the NAME of the environment variable holding the API key (the key "
        "itself is never written to a recipe, manifest or report).",
    )
    max_concurrency: PosInt = Field(8, description="openai: requests in flight at once.")
    timeout: PosFloat = Field(60.0, description="openai: seconds before a request is retried.")
    max_retries: NonNegInt = Field(
        3, description="openai: retries (with backoff) of timeouts, 429 and 5xx answers."
    )
    server_grammar: Literal["auto", "llmscisci", "regex", "json_schema", "none"] = Field(
        "auto",
        description="openai: how the task's answer grammar reaches the server. llmscisci: the "
        "grammar itself (`llmscisci serve`: the same answers as a local run); regex: vLLM-style "
        "`structured_outputs: {regex}` (the same labels, reasoning unbounded); json_schema: "
        "`response_format` with an exact schema of the answer as JSON {think, label}; none: "
        "free text. auto asks the server's /v1/models once: llmscisci serve → llmscisci, vLLM "
        "→ regex, anything else → json_schema.",
    )
    logprobs: bool = Field(
        True,
        description="Ask for token log-probabilities, from which predict writes "
        "<aspect>_confidence (the probability of the parsed answer); turn off for a server "
        "that refuses them.",
    )
    max_new_tokens: PosInt | None = Field(
        None,
        description="Tokens per answer (default: GRPO's max_completion_length, else by task "
        "kind: label 256, rationale 384, extract 256, judge 160).",
    )
    temperature: Annotated[Float, Field(ge=0.0, le=2.0)] = Field(
        0.0, description="Sampling temperature; 0 is greedy (predict, eval)."
    )
    top_p: Annotated[Float, Field(gt=0.0, le=1.0)] = Field(
        1.0, description="Nucleus sampling mass."
    )
    seed: Seed | None = Field(None, description="Sampling seed (default: train.seed).")
    batch_size: PosInt = Field(16, description="transformers: prompts generated together.")
    structured: bool = Field(
        True,
        description="Constrain answers to the task's answer grammar (format, label kind and "
        "label constraints; or its JSON schema), so they parse even from an untrained model: "
        "eval and predict alike (GRPO's rollouts always sample free text).",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto",
        description="transformers: static KV cache and fixed batch shapes, so the decode step "
        "compiles on CUDA (auto: on CUDA unless the weights are 4/8-bit). Also GRPO's rollouts.",
    )

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        """YAML reads a bare ``on``/``off`` as a boolean; take it as the word."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    rollout_weights: Literal["policy", "merged"] = Field(
        "policy",
        description="GRPO rollouts through the engine: decode with the LoRA policy itself, or "
        "with a merged copy (base + LoRA delta in the compute dtype, refreshed in place before "
        "each generation; one dense copy of the adapted layers in memory). merged keeps peft "
        "layers out of the compiled decode step and lets a 4-bit policy compile.",
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="GRPO with vllm: generate on the training GPU (colocate) or at base_url (a "
        "`trl vllm-serve` server).",
    )
    vllm_gpu_memory_utilization: Annotated[Float, Field(gt=0.0, lt=1.0)] = Field(
        0.3, description="GRPO with vllm colocate: share of GPU memory vLLM may take."
    )
    continuous_batching: bool = Field(
        False,
        description="GRPO with transformers: TRL's transformers continuous batching (paged "
        "attention) for the rollouts; its cache is sized for them (every request at once), "
        "not left to take half of the free memory.",
    )


class LaunchSpec(Section):
    num_processes: PosInt = Field(
        1, description="Processes (GPUs); >1 goes through `accelerate launch`."
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="Where to train; 'auto' is CUDA when present."
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="'auto' is bf16 on CUDA and off on CPU."
    )
    distributed: Literal["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"] = Field(
        "ddp", description="Multi-process strategy, applied through an accelerate config."
    )
    accelerate_config: FilePath | None = Field(
        None,
        description="Your own accelerate config YAML (relative to the recipe); replaces the generated one.",
    )


class Recipe(Section):
    version: Literal[1] = Field(RECIPE_VERSION, description="Recipe format version.")
    name: str = Field(
        ...,
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Run name (letters, digits, _ . -).",
    )
    description: str | None = Field(None, description="Free text shown by `plan`.")
    model: ModelSpec = Field(..., description="The base model, its quantization and LoRA.")
    template: TemplateSpec = Field(
        default_factory=TemplateSpec, description="The chat template used in training and eval."
    )
    data: DataSpec = Field(..., description="Data source, task and example building.")
    method: Method = Field(..., description="The algorithm and its own hyperparameters.")
    rewards: list[RewardSpec] | None = Field(None, description="GRPO only: the reward stack.")
    train: TrainSpec = Field(
        default_factory=TrainSpec, description="Optimisation and checkpointing."
    )
    launch: LaunchSpec = Field(
        default_factory=LaunchSpec, description="Processes, device and distribution."
    )
    generation: GenerationSpec = Field(
        default_factory=GenerationSpec,
        description="How the recipe generates: backend, sampling, structured output, rollouts.",
    )

    _source_path: Path | None = PrivateAttr(None)

    @property
    def source_path(self) -> Path | None:
        """The recipe file this was loaded from (None when built in code)."""
        return self._source_path

    @property
    def source_dir(self) -> Path:
        """Directory that relative paths in the recipe are resolved against."""
        return self._source_path.parent if self._source_path else Path.cwd()


def json_schema() -> dict[str, Any]:
    """The recipe JSON Schema (what `llmscisci schema` writes)."""
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmscisci recipe"
    return schema
