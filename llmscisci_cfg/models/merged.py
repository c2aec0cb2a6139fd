"""A plain copy of a LoRA policy for sampling: base weights plus the adapters' deltas.

GRPO samples from the policy it trains. Decoding through the peft model itself puts every LoRA
layer (two extra matmuls, dropout, a Python branch) in each decode step, and a 4-bit
bitsandbytes base cannot be compiled at all. `MergedCopy` is the model transformers would have
after ``merge_and_unload()``, without touching the trained one:

- the adapted linears (and any other quantized linear) get a dense weight of the compute dtype,
  ``W = dequantize(W_base) + B·A·scale``, summed in float32 and written **in place** by
  `refresh` before each generation round, so a captured CUDA graph keeps reading the current
  adapter;
- every other parameter and buffer (embeddings, norms, biases, rotary tables) is the policy's
  own tensor, shared, not copied: tied embeddings stay tied, and trained biases are current.
  Parameters of another floating dtype than the compute dtype (peft's k-bit preparation upcasts
  norms to float32) get a cast copy, refreshed like the weights: a plain linear, unlike
  bitsandbytes', does not cast its input. Buffers stay as they are (transformers keeps the
  rotary tables in float32 on purpose).

Memory: one dense copy of the adapted layers (for all-linear LoRA on a 1B model, ~1.4 GB in
bf16); `refresh` also makes a float32 temporary of one layer at a time (an adapted lm_head or
embedding: vocab × hidden × 4 bytes, ~1.2 GB for Gemma 3's). Merging into the policy instead
(``merge_adapter``/``unmerge_adapter``, as TRL does before a vLLM sync) would cost nothing, but
it adds and subtracts the delta in bf16 every step, so the trained base weights drift by a
rounding error per step; the copy never writes to them.
"""

from __future__ import annotations

import copy
from typing import Any

QUANTIZED_WEIGHTS = ("Params4bit", "Int8Params")  # bitsandbytes' parameter classes


def is_quantized(module: Any) -> bool:
    weight = getattr(module, "weight", None)
    return type(weight).__name__ in QUANTIZED_WEIGHTS


class MergedCopy:
    """``model``: a plain transformers model equal to ``policy`` (a peft model, or a model with
    quantized linears) after merging; `refresh` brings it up to date with the policy's adapters.
    """

    def __init__(self, policy: Any):
        import torch
        from peft.tuners.lora import LoraLayer

        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        unsupported(base)
        self.policy = policy
        self.dtype = compute_dtype(base)
        config = copy.deepcopy(base.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the copy is dense
        with torch.device("meta"):
            model = type(base)(config)
        self._dense: list[tuple[Any, Any]] = []  # (copy's layer, policy's module)
        self._cast: list[tuple[Any, Any]] = []  # (copy's parameter, policy's parameter)
        for path, target in model.named_modules():
            source = base.get_submodule(path)
            owner = source.get_base_layer() if isinstance(source, LoraLayer) else source
            dense = isinstance(source, LoraLayer) or is_quantized(source)
            for name in list(target._parameters):
                if dense and name == "weight":
                    target._parameters[name] = self._new(target.weight.shape, owner.weight.device)
                else:
                    target._parameters[name] = self._shared(owner._parameters.get(name))
            for name in list(target._buffers):  # as they are: transformers keeps rotary
                target._buffers[name] = owner._buffers[name]  # tables in float32 on purpose
            for name, value in list(vars(target).items()):  # plain tensor attributes
                if isinstance(value, torch.Tensor) and value.is_meta:
                    setattr(target, name, getattr(owner, name))
            if dense:
                self._dense.append((target, source))
        left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise RuntimeError(f"merged copy: no policy tensor for {', '.join(left[:5])}")
        model.generation_config = copy.deepcopy(base.generation_config)
        model.eval()
        self.model = model
        self.refresh()

    def _new(self, shape: Any, device: Any) -> Any:
        import torch

        empty = torch.empty(shape, dtype=self.dtype, device=device)
        return torch.nn.Parameter(empty, requires_grad=False)

    def _shared(self, param: Any) -> Any:
        """The policy's ``param`` itself, or a cast copy (refreshed) of another float dtype."""
        if param is None or not param.is_floating_point() or param.dtype == self.dtype:
            return param
        cast = self._new(param.shape, param.device)
        self._cast.append((cast, param))
        return cast

    @property
    def added_bytes(self) -> int:
        """Memory the copy adds: its dense weights and cast copies (the rest is shared)."""
        tensors = [t.weight for t, _ in self._dense] + [c for c, _ in self._cast]
        return sum(t.numel() * t.element_size() for t in tensors)

    def refresh(self) -> None:
        """Write ``dequantize(W_base) + Σ delta(active adapters)`` into the copy, in place."""
        import torch
        from peft.tuners.lora import LoraLayer
        from peft.utils.integrations import dequantize_module_weight

        with torch.no_grad():
            for target, source in self._dense:
                lora = isinstance(source, LoraLayer)
                owner = source.get_base_layer() if lora else source
                weight = dequantize_module_weight(owner).float()
                if lora and not source.disable_adapters and not source.merged:
                    for name in source.active_adapters:
                        if name in source.lora_A or name in source.lora_embedding_A:
                            weight = weight + source.get_delta_weight(name).float()
                target.weight.copy_(weight.to(self.dtype))
            for cast, tensor in self._cast:
                cast.copy_(tensor)


def compute_dtype(base: Any) -> Any:
    """The dtype the policy computes in: bitsandbytes' compute dtype for a 4-bit base (8-bit:
    the model's dtype), else the adapted layers' base weight dtype (LoRA weights themselves
    may be float32)."""
    from peft.tuners.lora import LoraLayer

    for module in base.modules():
        if is_quantized(module) and not isinstance(module, LoraLayer):  # bitsandbytes' own
            return getattr(module, "compute_dtype", None) or base.config.dtype
    for module in base.modules():
        if isinstance(module, LoraLayer):
            return module.get_base_layer().weight.dtype
    return base.get_input_embeddings().weight.dtype


def unsupported(base: Any) -> None:
    """Refuse peft features the copy does not reproduce (recipes cannot ask for them)."""
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    for path, module in base.named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            raise ValueError(f"merged copy: {path} is a modules_to_save copy; not supported")
        if isinstance(module, LoraLayer):
            if any(module.use_dora.values()) or any(getattr(module, "lora_bias", {}).values()):
                raise ValueError(f"merged copy: {path} uses DoRA or a LoRA bias; not supported")
