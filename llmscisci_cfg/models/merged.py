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
  Those of another floating dtype than the compute dtype (peft's k-bit preparation upcasts
  norms and embeddings to float32) get a cast copy, refreshed like the weights: a plain linear,
  unlike bitsandbytes', does not cast its input.

Memory: one dense copy of the adapted layers (for all-linear LoRA on a 1B model, ~1.4 GB in
bf16). Merging into the policy instead (``merge_adapter``/``unmerge_adapter``, as TRL does
before a vLLM sync) would cost nothing, but it adds and subtracts the delta in bf16 every step,
so the trained base weights drift by a rounding error per step; the copy never writes to them.
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
        self.policy = policy
        self.dtype = compute_dtype(base)
        config = copy.deepcopy(base.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the copy is dense
        with torch.device("meta"):
            model = type(base)(config)
        self._dense: list[tuple[Any, Any]] = []  # (copy's linear, policy's module)
        self._cast: list[tuple[Any, Any]] = []  # (copy's tensor, policy's tensor)
        for path, target in model.named_modules():
            source = base.get_submodule(path)
            if isinstance(source, LoraLayer) or is_quantized(source):
                owner = source.get_base_layer() if isinstance(source, LoraLayer) else source
                target._parameters["weight"] = self._new(target.weight.shape, owner.weight.device)
                target._parameters["bias"] = self._shared(owner._parameters.get("bias"))
                self._dense.append((target, source))
                continue
            for name in list(target._parameters):
                target._parameters[name] = self._shared(source._parameters[name])
            for name in list(target._buffers):
                target._buffers[name] = self._shared(source._buffers[name])
            for name, value in list(vars(target).items()):  # plain tensor attributes
                if isinstance(value, torch.Tensor) and value.is_meta:  # (rotary tables)
                    setattr(target, name, getattr(source, name))
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

    def _shared(self, tensor: Any) -> Any:
        """``tensor`` itself, or a cast copy (refreshed) when its floating dtype differs."""
        import torch

        if tensor is None or not tensor.is_floating_point() or tensor.dtype == self.dtype:
            return tensor
        if not isinstance(tensor, torch.nn.Parameter):
            return tensor.to(self.dtype)  # a buffer (rotary tables): computed once, not trained
        cast = self._new(tensor.shape, tensor.device)
        self._cast.append((cast, tensor))
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
                        if name in source.lora_A:
                            weight = weight + source.get_delta_weight(name).float()
                target.weight.copy_(weight.to(self.dtype))
            for cast, tensor in self._cast:
                cast.copy_(tensor)


def compute_dtype(base: Any) -> Any:
    """The dtype the policy computes in: bitsandbytes' compute dtype for a quantized base, else
    the adapted layers' base weight dtype (LoRA weights themselves may be float32)."""
    from peft.tuners.lora import LoraLayer

    for module in base.modules():
        if is_quantized(module):
            return getattr(module, "compute_dtype", None) or base.config.dtype
    for module in base.modules():
        if isinstance(module, LoraLayer):
            return module.get_base_layer().weight.dtype
    return base.get_input_embeddings().weight.dtype
