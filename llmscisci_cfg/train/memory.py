"""Peak GPU memory of a training run, estimated from the model's shape (no ML library imported).

`llmscisci plan` prints it. Three steps, each usable alone:

- `llmscisci_cfg.models.shapes.shape_for` finds the model's `ModelShape` (a built-in, a local
  folder's or the Hugging Face cache's ``config.json``, or a known hub model).
- `settings_for` reads `Settings` (plain fields) off the compiled job (`train.compile.Compiled`:
  the config and model kwargs TRL and transformers receive, so the estimate and the run cannot
  disagree) and the method's `MemoryFactors` (`train.methods`); `estimate` turns a shape and
  settings into an `Estimate`: parts in bytes, the peak, and `Estimate.as_text`.
- `estimate_job` does both for a resolved `Job`; `device_memory` and `quantization_note` are
  for ``plan --here``.

What is estimated is ``torch.cuda.max_memory_allocated`` of one process: the CUDA context
(~0.5 GiB) and the caching allocator's slack come on top of it in ``nvidia-smi``. For a CPU job
(``Settings.device``) it is the peak of torch's tensors in RAM. The model of what TRL 1.16 /
transformers 5.23 / peft 0.21 / bitsandbytes 0.50 keep is written out in `estimate` and
`layer_bytes_per_token`; it was checked against autograd's saved tensors (CPU), against the
measured peak of whole `llmscisci run` jobs on CPU (bench/bench_memory.py), and against the H200
peaks in ``../shared/bench/gpu_baseline_h200_2026-11-26.json`` and bench/RESULTS.md
(tests/train/test_memory.py has the figures).

>>> shape = shape_for("google/gemma-3-1b-it")  # llmscisci_cfg.models.shapes
>>> est = estimate(shape, method="sft", quant_bits=4, lora_r=16, batch=16, seq_len=297)
>>> round(est.total / GIB, 1)
14.6
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from llmscisci_cfg.models.shapes import LINEAR, ModelShape, shape_for
from llmscisci_cfg.train import methods
from llmscisci_cfg.train.methods.grpo import continuous_batching_config, rollout_rows

if TYPE_CHECKING:
    from llmscisci_cfg.recipe.resolve import Job
    from llmscisci_cfg.train.compile import Compiled

GIB = 2**30

# TRL 1.16 fused LM head (trl/kernels/chunked_logprob.py): tiles of TOKEN_CHUNK x VOCAB_CHUNK.
FUSED_TOKEN_CHUNK, FUSED_VOCAB_CHUNK = 4096, 32768
# Without Triton (CPU) TRL folds each tile in torch: fp32 temporaries of the tile's real width
# (`_backward_tile`: scaled logits, log-probs, probabilities, the gradient and its factors),
# about 8 alive at once (measured: bench/bench_memory.py, bench/README.md).
TORCH_FOLD_TILES = 8
# Lengths assumed when the recipe leaves them open and the data is not built yet.
DEFAULT_SEQ_LEN, DEFAULT_PROMPT_LEN = 1024, 512


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """What the estimate needs from a compiled job, as plain values (`settings_for` fills it).

    ``method``: the training method, whose `methods.MemoryFactors` say how many sequences an
    example is, what the LM head scores, whether LoRA dropout runs and whether it generates.
    ``seq_len``: padded tokens per sequence (SFT, DPO). A generating method (GRPO) trains
    on ``grpo_prompt_len + grpo_completion_len`` and generates for ``generation_batch`` rows
    (default ``batch``).
    ``grad_accum``: micro-batches per optimizer step (gradients then outlive a backward).
    ``lora_r`` None: full fine-tuning. ``dtype_bytes``: unquantized weights; activations are
    2 bytes under bf16/fp16 mixed precision, else ``dtype_bytes``. ``device``: ``cuda``, or
    ``cpu`` (the figures are then tensors in RAM, and TRL's fused LM head runs without Triton).
    """

    method: str = "sft"
    quant_bits: int | None = None
    double_quant: bool = True
    dtype_bytes: int = 2
    mixed_precision: bool = True
    lora_r: int | None = None
    lora_targets: str | tuple[str, ...] = "all-linear"
    lora_dropout: float = 0.05
    optimizer: str = "adamw_torch"
    batch: int = 1
    grad_accum: int = 1
    seq_len: int = DEFAULT_SEQ_LEN
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    padding_free: bool = False
    liger: bool = False
    grpo_num_generations: int = 4
    grpo_completion_len: int = 256
    grpo_prompt_len: int = DEFAULT_PROMPT_LEN
    generation_batch: int | None = None
    beta: float = 0.0
    merged_rollouts: bool = False
    continuous_batching: bool = False
    generation_prompt_len: int | None = None  # rollouts' longest prompt (eval's too)
    vllm: str | None = None  # GRPO rollouts by vLLM: "colocate" (this GPU) or "server"
    vllm_share: float = 0.0  # colocated: the share of the GPU's memory vLLM reserves
    vllm_reserved: int = 0  # ... in bytes, once the GPU's size is known (`plan --here`)
    quant_compute_bytes: int = 2
    fused_lm_head: bool = True
    logits_dtype_bytes: int = 4
    device: str = "cuda"
    assumed: tuple[str, ...] = field(default=(), compare=False)  # lengths filled by defaults

    @property
    def act_bytes(self) -> int:
        """Activations: the weights' dtype, or 2 bytes under mixed precision (bitsandbytes'
        layers return their input's dtype whatever their compute dtype)."""
        return 2 if self.mixed_precision else self.dtype_bytes

    @property
    def padded_sdpa(self) -> bool:
        """sdpa over a padded batch (repeated k/v, a mask bias); padding-free rows have none."""
        return self.attn_implementation == "sdpa" and self.sequences > 1 and not self.padding_free

    @property
    def factors(self) -> methods.MemoryFactors:
        """The method's memory factors (`methods.TrainingMethod.memory`)."""
        return methods.get(self.method).memory

    @property
    def dropout_active(self) -> bool:
        """LoRA dropout as TRL runs it (`MemoryFactors.dropout`: DPOConfig.disable_dropout is on
        by default)."""
        return self.lora_dropout > 0 and self.factors.dropout

    @property
    def reference(self) -> bool:
        """Whether training keeps a frozen reference model (DPO; GRPO with beta > 0)."""
        return methods.get(self.method).needs_reference(self.beta)

    def targets(self) -> tuple[str, ...]:
        if self.lora_targets == "all-linear":
            return LINEAR
        return tuple(m for m in LINEAR if any(t.split(".")[-1] == m for t in self.lora_targets))

    @property
    def sequences(self) -> int:
        """Sequences per forward: DPO concatenates chosen and rejected."""
        return self.factors.sequences * self.batch

    @property
    def length(self) -> int:
        if self.factors.generates:
            return self.grpo_prompt_len + self.grpo_completion_len
        return self.seq_len

    @property
    def scored_tokens(self) -> int:
        """Tokens the LM head scores: GRPO only the completions."""
        per_row = self.grpo_completion_len if self.factors.scores_completions else self.length
        return self.sequences * per_row


_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def settings_for(compiled: Compiled, lengths: Mapping[str, int | None] | None = None) -> Settings:
    """`Settings` of a compiled job: read off what TRL, transformers, peft and bitsandbytes
    receive (`Compiled.config_kwargs`, ``model_kwargs``, ``lora_kwargs``, ``bnb_kwargs``) and
    the method's `methods.MemoryFactors`. ``lengths``: the built dataset's token limits
    (``BuildReport.length_limits``: ``prompt``, ``total``; ``prompt_any``: a generating
    method's longest prompt of either split, for the rollouts); without them the config's
    ``max_length`` is the sequence length and a generating method assumes
    `DEFAULT_PROMPT_LEN` prompt tokens."""
    kw, factors = compiled.config_kwargs, methods.get(compiled.method).memory
    bnb, lora = compiled.bnb_kwargs or {}, compiled.lora_kwargs
    lengths = lengths or {}
    assumed: list[str] = []
    seq_len = kw.get("max_length")
    packed = kw.get("packing", False) and seq_len is not None  # rows filled to max_length
    if lengths.get("total") and not packed:
        seq_len = min(seq_len or lengths["total"], lengths["total"])
    if seq_len is None and not factors.generates:
        seq_len = DEFAULT_SEQ_LEN
        assumed.append(f"seq_len {DEFAULT_SEQ_LEN}")
    prompt_len = lengths.get("prompt")
    if factors.generates and not prompt_len:
        prompt_len = DEFAULT_PROMPT_LEN
        assumed.append(f"prompt {DEFAULT_PROMPT_LEN} tokens")
    quant_bits = 4 if bnb.get("load_in_4bit") else 8 if bnb.get("load_in_8bit") else None
    targets = lora["target_modules"] if lora else "all-linear"
    vllm = kw.get("vllm_mode", "colocate") if kw.get("use_vllm") else None
    return Settings(
        method=compiled.method,
        quant_bits=quant_bits,
        double_quant=bnb.get("bnb_4bit_use_double_quant", True),
        dtype_bytes=_DTYPE_BYTES[compiled.model_kwargs["dtype"]],
        mixed_precision=bool(kw["bf16"] or kw["fp16"]),
        lora_r=lora["r"] if lora else None,
        lora_targets=targets if isinstance(targets, str) else tuple(targets),
        lora_dropout=lora["lora_dropout"] if lora else 0.0,
        optimizer=kw["optim"],
        batch=kw["per_device_train_batch_size"],
        grad_accum=kw["gradient_accumulation_steps"],
        seq_len=seq_len or DEFAULT_SEQ_LEN,
        gradient_checkpointing=bool(kw["activation_checkpointing"]),
        attn_implementation=compiled.model_kwargs["attn_implementation"] or "sdpa",
        padding_free=bool(kw.get("padding_free") or kw.get("packing")),
        liger=kw["use_liger_kernel"],
        grpo_num_generations=kw.get("num_generations", 4),
        grpo_completion_len=kw.get("max_completion_length", 256),
        grpo_prompt_len=prompt_len or DEFAULT_PROMPT_LEN,
        generation_batch=rollout_rows(kw) if factors.generates else None,
        beta=kw.get("beta", 0.0),
        merged_rollouts=compiled.merged_rollouts,
        continuous_batching=bool(kw.get("use_transformers_continuous_batching")),
        vllm=vllm,
        vllm_share=kw.get("vllm_gpu_memory_utilization", 0.3) if vllm == "colocate" else 0.0,
        generation_prompt_len=lengths.get("prompt_any"),
        quant_compute_bytes=_DTYPE_BYTES[bnb.get("bnb_4bit_compute_dtype", "bfloat16")],
        device=compiled.device,
        assumed=tuple(assumed),
    )


# ----------------------------------------------------------------------------- estimate


@dataclass(frozen=True)
class Part:
    """One line of the estimate. ``phase``: ``static`` (held throughout), or the phase it
    belongs to (``train``: forward/backward, ``optimizer``: the step, ``generate``: GRPO)."""

    name: str
    bytes: int
    detail: str
    phase: str = "static"


@dataclass(frozen=True)
class Estimate:
    """Peak = static parts + the largest phase (phases do not overlap in time)."""

    shape: ModelShape
    settings: Settings
    parts: tuple[Part, ...]

    def phase_bytes(self, phase: str) -> int:
        return sum(p.bytes for p in self.parts if p.phase == phase)

    @property
    def peak_phase(self) -> str:
        return max(("train", "optimizer", "generate"), key=self.phase_bytes)

    @property
    def total(self) -> int:
        return self.phase_bytes("static") + self.phase_bytes(self.peak_phase)

    def get(self, name: str) -> int:
        """Bytes of the part called ``name`` (0 when there is none)."""
        return sum(p.bytes for p in self.parts if p.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.shape.name,
            "params": self.shape.params,
            "total_bytes": self.total,
            "total_gib": round(self.total / GIB, 2),
            "peak_phase": self.peak_phase,
            "parts": [asdict(p) for p in self.parts],
            "assumed": list(self.settings.assumed),
        }

    def as_text(self) -> str:
        """A few lines for ``plan``, e.g.::

        peak GPU memory ≈ 14.6 GiB (torch allocated; + ~0.5 GiB CUDA context), in train
          weights          0.90 GiB  nf4 + double quant ...
        """
        s = self.settings
        what = (
            "peak GPU memory ≈ {:.1f} GiB (allocated by torch; the CUDA context adds ~0.5 GiB)"
            if s.device == "cuda"
            else "peak memory ≈ {:.1f} GiB (torch's tensors in RAM, on CPU)"
        )
        head = (
            f"{what.format(self.total / GIB)}, at {self.peak_phase}; {self.shape.name}, "
            f"{_count(self.shape.params)} params"
        )
        if s.assumed:
            head += f"; assumed {', '.join(s.assumed)}"
        lines = [head]
        for p in self.parts:
            if p.bytes == 0 and p.name != "vllm":  # vLLM's share: said even when not counted
                continue
            where = "" if p.phase in ("static", self.peak_phase) else f" [{p.phase}, not at peak]"
            lines.append(f"  {p.name:<16}{p.bytes / GIB:7.2f} GiB  {p.detail}{where}")
        return "\n".join(lines)


def estimate(shape: ModelShape, settings: Settings | None = None, **fields: Any) -> Estimate:
    """Peak ``torch.cuda.max_memory_allocated`` of a training run (one process, one GPU; on
    CPU, ``device="cpu"``: the peak of torch's tensors in RAM).

    Give a `Settings` or its fields as keywords: ``estimate(shape, method="grpo", batch=16)``.
    Assumptions (TRL 1.16, transformers 5.23, peft 0.21, bitsandbytes 0.50):

    - weights: decoder linears at 4 bits (nf4/fp4: 0.5 byte + one fp32 absmax per 64-weight
      block, 4/64 byte; double quant stores that absmax in 8 bits plus an fp32 per 256 blocks,
      1/64 + 4/16384 byte), 8 bits (1 byte + an fp32 scale per output row), or ``dtype_bytes``;
      embeddings, an untied LM head, norms and biases are never quantized (``dtype_bytes``).
      A reference copy of the weights when DPO or GRPO (beta > 0) trains without LoRA.
    - trainable parameters: LoRA ``r × (in + out)`` per targeted linear, kept in fp32 (peft
      upcasts adapters); full fine-tuning trains every weight in ``dtype_bytes``. Their
      gradients, in the same dtype, are held throughout with gradient accumulation; without
      it they only fill up as backward frees the activations, so they count in the optimizer
      phase (the peak is at the start of backward). Optimizer states per trainable parameter: AdamW two moments in
      the parameter's dtype; 8-bit AdamW (paged too: counted as if resident) 2 bytes + block
      constants; SGD (no momentum) none.
    - optimizer phase: non-fused ``adamw_torch`` (foreach) makes one temporary copy of the
      second moments (``_foreach_sqrt``); activations are free by then.
    - activations (train phase): `layer_bytes_per_token` × tokens × layers, where tokens =
      sequences × padded length (DPO: 2 × batch sequences; GRPO: prompt + completion), plus
      the attention mask bias sdpa keeps per layer (bytes × length² per sequence) or eager's
      score matrices (heads × length² × 6 bytes). With gradient checkpointing each layer keeps
      only its input (2 bytes × hidden per token), and one layer is recomputed at a time.
      Outside the layers: the final norm (fp32 copy), the last hidden states, and what the LM
      head keeps.
    - LM head: TRL's fused log-prob head never builds the logits; its backward holds one
      4096 × 32768 tile in the compute dtype and an fp32 gradient of the scored hidden states
      (when the embedding trains: its fp32 gradient and the gradient it is cast to). Without
      Triton (CPU) every position is projected, and the torch fold keeps `TORCH_FOLD_TILES`
      fp32 tiles of the real width (vocab, at most 32768). With ``fused_lm_head=False``
      (other trainers): tokens × vocab × (compute bytes + 2 × ``logits_dtype_bytes``): the
      logits, their fp32 copy and the log-softmax kept for backward.
    - rollouts by vLLM: no generate phase here; colocated, its share of the GPU
      (``vllm_gpu_memory_utilization`` × the device, counted once ``plan --here`` knows it).
      Continuous batching: the paged cache `compile.continuous_batching_config` sizes, and the
      attention masks of its scheduler steps, in place of the KV cache below.
    - generate phase (GRPO, not at the same time as training): the KV cache, ``generation_batch``
      × (prompt + completion) × layers × 2 × kv_dim × activation bytes (full length for Gemma's sliding
      layers too: an upper bound). TRL 1.16 turns gradient checkpointing off while it
      generates, so the cache is kept with it on too.
      The transient of the widest layer (MLP: 3 × intermediate + 4 × hidden per token) and the
      last position's logits (compute dtype, fp32 scores and probabilities).
    """
    s = replace(settings or Settings(), **fields)
    if s.quant_bits and not s.lora_r:
        raise ValueError("quantized weights are trained only through LoRA (set lora_r)")
    parts = [*_static_parts(shape, s), *_train_parts(shape, s), *_optimizer_parts(shape, s)]
    if s.factors.generates and s.vllm is None:
        parts += _generate_parts(shape, s)
    if s.vllm == "colocate":  # vLLM's weights and KV cache: a share of the whole GPU
        known = "" if s.vllm_reserved else "; not counted until the GPU is known (plan --here)"
        parts.append(
            Part("vllm", s.vllm_reserved, f"colocated vLLM: {s.vllm_share:.0%} of the GPU{known}")
        )
    return Estimate(shape, s, tuple(parts))


def estimate_job(
    job: Job,
    compiled: Compiled,
    lengths: Mapping[str, int | None] | None = None,
    cache_dir=None,
) -> Estimate | None:
    """The estimate for a resolved job as compiled for its device; None when the model's
    shape is unknown here (a hub id neither cached nor in `KNOWN_SHAPES`, a run's ``final/``
    not written yet). On a CPU job the figures are the tensors' share of RAM."""
    source = str(job.model.local_dir) if job.model.local_dir else job.model.name
    shape = shape_for(source, job.model.revision, cache_dir)
    if shape is None:
        return None
    return estimate(shape, settings_for(compiled, lengths))


def weight_bytes(shape: ModelShape, s: Settings) -> int:
    """Bytes of the base weights as loaded (see `estimate`)."""
    other = (shape.embedding_params + shape.small_params) * s.dtype_bytes
    if s.quant_bits == 4:
        per = 0.5 + (1 / 64 + 4 / (64 * 256) if s.double_quant else 4 / 64)
        return other + round(shape.linear_params * per)
    if s.quant_bits == 8:
        rows = shape.layers * sum(o for _, o in shape.linear_dims().values())
        return other + shape.linear_params + 4 * rows
    return other + shape.linear_params * s.dtype_bytes


def lora_params(shape: ModelShape, s: Settings) -> int:
    """LoRA parameters: ``r × (in + out)`` per targeted linear and layer."""
    dims = shape.linear_dims()
    return shape.layers * sum(s.lora_r * sum(dims[m]) for m in s.targets()) if s.lora_r else 0


def _optimizer_state_bytes(s: Settings, param_bytes: int) -> float:
    if s.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return 2 + 2 * 4 / 256  # two uint8 moments, an fp32 absmax per 256-value block each
    if s.optimizer == "paged_adamw_32bit":
        return 8  # two fp32 moments (paged: counted as if resident)
    if s.optimizer in ("sgd", "adafactor"):
        return 0  # adafactor: factored row/column statistics, negligible beside the weights
    return 2 * param_bytes  # adamw_torch, adamw_torch_fused: two moments


def _trainable(shape: ModelShape, s: Settings) -> tuple[int, int]:
    """(trainable parameters, bytes per parameter)."""
    return (lora_params(shape, s), 4) if s.lora_r else (shape.params, s.dtype_bytes)


def _count(n: int) -> str:
    """``999885952`` -> ``1.00 B``, ``13045760`` -> ``13.0 M``, ``1152`` -> ``1.2 k``."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f} {unit}" if unit == "B" else f"{n / div:.1f} {unit}"
    return str(n)


def _static_parts(shape: ModelShape, s: Settings) -> list[Part]:
    w = weight_bytes(shape, s)
    quant = {4: "4-bit", 8: "8-bit"}.get(s.quant_bits or 0, f"{s.dtype_bytes}-byte")
    dq = " + double quant" if s.quant_bits == 4 and s.double_quant else ""
    parts = [
        Part(
            "weights",
            w,
            f"{_count(shape.linear_params)} linear weights {quant}{dq}, "
            f"{_count(shape.embedding_params + shape.small_params)} others in "
            f"{s.dtype_bytes} bytes",
        )
    ]
    n, per = _trainable(shape, s)
    what = f"LoRA r {s.lora_r} ({_count(n)}, fp32)" if s.lora_r else f"{_count(n)} weights"
    opt = _optimizer_state_bytes(s, per)
    parts += [
        Part("trainable", n * per if s.lora_r else 0, what),
        Part("gradients", n * per, f"of {what}", "static" if s.grad_accum > 1 else "optimizer"),
        Part("optimizer", round(n * opt), f"{s.optimizer} states, {opt:g} bytes/param"),
    ]
    if s.reference and not s.lora_r:
        parts.append(Part("reference", w, "frozen copy of the weights (no LoRA to switch off)"))
    if s.merged_rollouts:
        parts.append(_merged_copy_part(shape, s))
    return parts


def _merged_copy_part(shape: ModelShape, s: Settings) -> Part:
    """GRPO's merged rollout copy (`llmscisci_cfg.models.merged`): a dense weight in the
    compute dtype (the weights' dtype; a 4-bit base's bitsandbytes compute dtype) for every
    adapted layer (an adapted lm_head or embedding too) and every quantized linear, plus cast
    copies of the other weights when that dtype is not theirs; the rest is shared."""
    dims = shape.linear_dims()
    dense = LINEAR if s.quant_bits else s.targets()
    count = shape.layers * sum(dims[name][0] * dims[name][1] for name in dense)
    named = () if s.lora_targets == "all-linear" else s.lora_targets
    ends = {t.split(".")[-1] for t in named}
    count += shape.vocab * shape.hidden * len(ends & {"lm_head", "embed_tokens"})
    per = s.quant_compute_bytes if s.quant_bits == 4 else s.dtype_bytes
    if per != s.dtype_bytes:
        count += shape.embedding_params + shape.small_params
    return Part("merged copy", count * per, f"{_count(count)} dense weights for rollouts")


def layer_bytes_per_token(shape: ModelShape, s: Settings) -> dict[str, int]:
    """Bytes one decoder layer keeps for backward per token, by what keeps them.

    Read off autograd's saved tensors (transformers 5.23, peft 0.21, bitsandbytes 0.50, CUDA
    autocast); ``a`` = activation bytes (2 under bf16):

    - norms: RMSNorm computes in fp32, so it keeps an fp32 copy of its input (4 bytes × dim);
      a trained norm weight also keeps the normalised values (Gemma: fp32, others: ``a``).
      Gemma 3: 4 norms of hidden and q/k norms of q_dim/kv_dim; Llama/Qwen2: 2 norms.
    - linear inputs: a frozen base linear keeps nothing (torch saves the input only for a
      weight gradient; bitsandbytes' 4-bit matmul keeps only the weight). Full fine-tuning
      keeps each distinct input: hidden (q/k/v), q_dim (o), hidden (gate/up), intermediate.
    - LoRA, per targeted linear of input size d: with dropout, the dropped input (``a`` × d)
      and the bool mask (1 × d); without, lora_A keeps its input, shared by q/k/v and by
      gate/up. lora_B keeps ``a × r``.
    - attention: sdpa with a padding mask (batch > 1) repeats k/v to every head and keeps
      q, k, v and the output (4 × ``a`` × q_dim) plus the mask as a bias (`layer_bytes_per_seq`);
      flash-attention-2, or sdpa without padding, keeps k/v unrepeated; eager keeps q and the
      repeated k and v (3 × ``a`` × q_dim) plus its score matrices. Rotary embeddings keep only
      cos/sin, shared by every layer.
    - MLP: the activation keeps the gate output, the product keeps the activation and up
      outputs: 3 × ``a`` × intermediate.
    - Liger kernels (``liger``): the fused gated MLP keeps only gate and up outputs
      (2 × ``a`` × intermediate), the fused RMSNorm its input in ``a`` bytes instead of fp32.
    """
    a, h, q, kv, i = s.act_bytes, shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate
    full = not s.lora_r
    norm_dims = [h, h, h, h, q, kv] if shape.gemma else [h, h]
    extra = 4 if shape.gemma else a
    kept = a if s.liger else 4  # Liger's RMSNorm keeps its input in the compute dtype
    out = {"norms": sum((kept + (extra if full else 0)) * d for d in norm_dims)}
    out["linear inputs"] = a * (2 * h + q + i) if full else 0
    dims, targets = shape.linear_dims(), s.targets() if s.lora_r else ()
    if s.dropout_active:
        lora = sum((a + 1) * dims[m][0] for m in targets)
    else:
        inputs = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "gate_proj": "mlp"}
        inputs |= {"up_proj": "mlp", "o_proj": "o", "down_proj": "down"}
        lora = sum(a * dims[m][0] for m in {inputs[m]: m for m in targets}.values())
    out["lora"] = lora + a * (s.lora_r or 0) * len(targets)
    lse = 4 * shape.heads  # logsumexp, fp32 per head
    if s.attn_implementation == "eager":
        out["attention"] = 3 * a * q
    elif s.padded_sdpa:
        out["attention"] = 4 * a * q + lse
    else:
        out["attention"] = a * (2 * q + 2 * kv) + lse
    out["mlp"] = (2 if s.liger else 3) * a * i  # Liger's fused gated MLP recomputes the product
    return out


def layer_bytes_per_seq(shape: ModelShape, s: Settings) -> int:
    """Bytes one layer keeps per sequence per length²: sdpa with padding keeps the mask as a
    bias in the compute dtype; eager keeps softmax (fp32) and its compute-dtype copy per head."""
    if s.attn_implementation == "eager":
        return shape.heads * (4 + s.act_bytes)
    if s.padded_sdpa:
        return s.act_bytes
    return 0


def _train_parts(shape: ModelShape, s: Settings) -> list[Part]:
    a, h, L = s.act_bytes, shape.hidden, s.length
    tokens, scored = s.sequences * L, s.scored_tokens
    per_tok = sum(layer_bytes_per_token(shape, s).values())
    layer = per_tok * tokens + layer_bytes_per_seq(shape, s) * s.sequences * L * L
    if s.gradient_checkpointing:
        acts = shape.layers * a * h * tokens + layer
        how = (
            f"checkpointed: {shape.layers} layer inputs + 1 layer of {per_tok / 1024:.1f} KiB/token"
        )
    else:
        acts = shape.layers * layer
        how = f"{shape.layers} layers × {per_tok / 1024:.1f} KiB/token"
    trained_norm = 0 if s.lora_r else 4
    outside = (4 + trained_norm + 2 * a) * h * tokens + (a * h + 8) * scored
    rows = f"{s.sequences} × {L} tokens"
    if s.factors.generates:
        rows += f" ({s.sequences // s.grpo_num_generations or 1} prompts × completions)"
    parts = [Part("activations", acts + outside, f"{how} × {rows}", "train")]
    if s.fused_lm_head:
        triton = s.device == "cuda"  # elsewhere every position is projected, scored or not
        projected = scored if triton else tokens
        tile = min(projected, FUSED_TOKEN_CHUNK)
        head = tile * FUSED_VOCAB_CHUNK * a + 4 * h * projected
        head += 0 if s.lora_r else (4 + s.dtype_bytes) * shape.vocab * h  # fp32 + own grad
        detail = f"TRL fused log-probs: one {tile}×{FUSED_VOCAB_CHUNK} tile, no logits"
        if not triton:
            head += TORCH_FOLD_TILES * tile * min(shape.vocab, FUSED_VOCAB_CHUNK) * 4
            detail += f" (+ {TORCH_FOLD_TILES} fp32 tiles of its torch fold: no Triton)"
    else:
        head = scored * shape.vocab * (a + 2 * s.logits_dtype_bytes)
        detail = f"logits {scored} × {shape.vocab} (+ fp32 copy and log-softmax)"
    parts.append(Part("lm head", head, detail, "train"))
    return parts


def _optimizer_parts(shape: ModelShape, s: Settings) -> list[Part]:
    if s.optimizer != "adamw_torch":
        return []
    n, per = _trainable(shape, s)
    return [Part("adamw step", n * per, "foreach temporary of the second moments", "optimizer")]


def _generate_parts(shape: ModelShape, s: Settings) -> list[Part]:
    a, rows = s.act_bytes, s.generation_batch or s.batch
    prompt = max(s.grpo_prompt_len, s.generation_prompt_len or 0)
    full = prompt + s.grpo_completion_len
    if s.continuous_batching:
        cache, step_tokens, blocks = paged_cache_bytes(
            shape, rows, prompt, s.grpo_completion_len, a
        )
        how = f"paged KV cache of {blocks} blocks and its attention masks"
    else:
        # TRL switches gradient checkpointing off around generate(), so the cache is kept
        cache = rows * full * shape.layers * 2 * shape.kv_dim * a
        step_tokens = rows * prompt
        how = f"KV cache {rows} × {full} tokens"
    transient = step_tokens * a * (3 * shape.intermediate + 4 * shape.hidden)
    logits = rows * shape.vocab * (a + 8)
    detail = f"{how}; widest layer's transient; last-token logits"
    return [Part("generation", cache + transient + logits, detail, "generate")]


def paged_cache_bytes(
    shape: ModelShape, rows: int, prompt: int, completion: int, a: int = 2
) -> tuple[int, int, int]:
    """Continuous batching's paged KV cache as `compile.continuous_batching_config` sizes it,
    plus its scheduler's attention masks: (bytes, tokens per scheduler step, blocks).

    A mask per attention kind, ``[M, N + M]`` in the compute dtype, where N is what the
    smallest group of layers could read if it held the whole cache (transformers'
    ``max_tokens_read``): the few full-attention layers of a sliding-window model (Gemma 3)
    spread the cache's bytes over fewer layers, so N, and the masks, grow by layers ÷ full.
    """

    cb = continuous_batching_config(rows, prompt, completion)
    slots, step = cb["num_blocks"] * cb["page_size"], cb["max_batch_tokens"]
    full = shape.full_layers or shape.layers
    readable = slots * shape.layers // full
    masks = (1 if full == shape.layers else 2) * a * step * (readable + step)
    return slots * shape.layers * 2 * shape.kv_dim * a + masks, step, cb["num_blocks"]


# ----------------------------------------------------------------------------- this machine


def device_memory() -> int | None:
    """Total memory in bytes of this machine's first visible GPU, from ``nvidia-smi`` (no
    torch); None without one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return None
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    cmd = [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    first = (visible or "").split(",")[0].strip()
    if first:
        cmd += ["-i", first]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
        return int(float(out.split()[0])) * 2**20  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


# nf4 vs bf16 on an H200, gemma-3-1b shape (random weights), 2026-11-26:
# - ../shared/bench/generate_probe_h200_2026-11-26.txt, decode ms/step, 16 rows x 128 new tokens:
#   bf16 87.9, nf4 42.1; bf16 was the process's first generate, without warm-up.
# - rerun with a warm-up and bf16 timed before and after nf4 (16 rows, 300 prompt + 64 new):
#   bf16 75.4 (first) then 36.8, nf4 47.3 ms/step; LoRA r16 training step (16 x 300 tokens, fused
#   head, AdamW): nf4 0.354 s, bf16 0.277 s; peak 14.62 vs 15.52 GiB.
NF4_COST = {"decode_ms": (47.3, 36.8), "train_step_s": (0.354, 0.277), "peak_gib": (14.62, 15.52)}


def quantization_note(
    shape: ModelShape, device_total: int | None, settings: Settings | None = None
) -> str | None:
    """One line when 4-bit weights cost time for little memory on this card, else None.

    Fires when 4-bit saves under 5% of ``device_total`` and (with ``settings``) the bf16
    estimate fits in 90% of it. It only informs: the recipe is not changed. The cost figures
    are `NF4_COST` (H200, gemma-3-1b shape).
    """
    if not device_total:
        return None
    s = replace(settings or Settings(lora_r=16), quant_bits=None)
    saved = weight_bytes(shape, s) - weight_bytes(shape, replace(s, quant_bits=4))
    if saved >= 0.05 * device_total:
        return None
    if settings is not None and estimate(shape, s).total + GIB // 2 > 0.9 * device_total:
        return None
    (dq, db), (tq, tb) = NF4_COST["decode_ms"], NF4_COST["train_step_s"]
    return (
        f"4-bit weights save only {saved / GIB:.1f} GiB of this GPU's {device_total / GIB:.0f} GiB "
        f"and cost time: on an H200 (gemma-3-1b shape) nf4 made a LoRA step {tq / tb - 1:.0%} slower "
        f"({tq} vs {tb} s) and decoding {dq / db - 1:.0%} slower ({dq} vs {db} ms/step); "
        "model.quantization: null trains in bf16"
    )
