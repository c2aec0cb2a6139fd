"""The ``vllm`` backend of the engine: vLLM in-process, where it is installed (a CUDA machine).

Imported only when a recipe chooses ``generation.backend: vllm``; without the package the
`UserError` says how to get it or which backend to use instead. Structured output uses vLLM's
own guidance with the task's answer as a regular expression (`Constraint.regex`: the same labels
as the local grammar, reasoning bounded by ``max_tokens``), or the task's JSON schema for
extract and judge answers; the text is kept as vLLM returned it. Not tested on this project's
CPU machines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models.generate import Completion, GenerationStats, Request, TokenCallback


def _vllm():
    try:
        import vllm
    except ImportError:
        raise UserError(
            "generation.backend: vllm needs the vllm package (pip install vllm, on a CUDA "
            "machine); or use backend: transformers, or backend: openai with `vllm serve`"
        ) from None
    return vllm


class VLLMEngine:
    """Generate with ``vllm.LLM`` on this machine's GPU."""

    def __init__(self, model: str, *, dtype: str = "auto", seed: int = 0, **kwargs: Any):
        vllm = _vllm()
        self.llm = vllm.LLM(model=model, dtype=dtype, seed=seed, **kwargs)
        self.stats = GenerationStats(f"vllm {model}")

    def _params(self, request: Request):
        vllm = _vllm()
        s = request.sampling
        kwargs: dict[str, Any] = {
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "n": s.n,
            "seed": s.seed,
            "stop": list(s.stop) or None,
        }
        c = request.constraint
        if c is not None:
            form = {"json": c.schema} if c.kind == "json_schema" else {"regex": c.regex()}
            params = getattr(vllm.sampling_params, "StructuredOutputsParams", None)
            if params is not None:
                kwargs["structured_outputs"] = params(**form)
            else:  # older vLLM
                kwargs["guided_decoding"] = vllm.sampling_params.GuidedDecodingParams(**form)
        return vllm.SamplingParams(**kwargs)

    def generate(
        self,
        requests: Sequence[Request],
        *,
        desc: str | None = None,
        on_token: TokenCallback | None = None,
    ) -> list[list[Completion]]:
        started = time.perf_counter()
        conversations = [r.messages or [{"role": "user", "content": r.prompt}] for r in requests]
        outputs = self.llm.chat(
            conversations, [self._params(r) for r in requests], use_tqdm=bool(desc)
        )
        out = []
        for result in outputs:
            samples = []
            for o in result.outputs:
                text = o.text
                reason = "length" if o.finish_reason == "length" else "stop"
                samples.append(
                    Completion(text, len(result.prompt_token_ids), len(o.token_ids), reason)
                )
            out.append(samples)
        self.stats.add([c for row in out for c in row], time.perf_counter() - started)
        return out
