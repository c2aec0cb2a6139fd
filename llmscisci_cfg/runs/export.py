"""``llmscisci export RUN --merge``: a plain model directory that ``AutoModelForCausalLM`` loads offline.

A LoRA run's ``final/`` is merged into its base (rebuilt or reloaded unquantized, per the
manifest); a full fine-tune is re-saved. The tokenizer carries the training chat template.
"""

from __future__ import annotations

from pathlib import Path

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.runs import manifest
from llmscisci_cfg.runs.rundir import FINAL

DEFAULT_DIR = "exported"


def export_run(run_dir: str | Path, merge: bool, output: str | Path | None = None) -> Path:
    """Save ``run_dir``'s model + tokenizer into ``output`` (default ``RUN_DIR/exported``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmscisci_cfg.train.build import load_adapter_merged, quiet_bitsandbytes

    quiet_bitsandbytes()
    run_dir = Path(run_dir)
    record = manifest.read(run_dir)
    final_dir = run_dir / FINAL
    if not final_dir.is_dir() or not any(final_dir.iterdir()):
        raise UserError(
            f"{run_dir}: no {FINAL}/ model (run status: {record.get('status')}); finish the run first"
        )
    out = Path(output) if output else run_dir / DEFAULT_DIR
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: output directory is not empty; remove it or pass -o DIR")
    kind = record["final"]["kind"]
    model_kwargs = record["compiled"]["model_kwargs"]
    if kind == "adapter":
        if not merge:
            raise UserError(
                f"{final_dir} holds a LoRA adapter; pass --merge to merge it into the base weights"
            )
        model = load_adapter_merged(final_dir, model_kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            str(final_dir), dtype=getattr(torch, model_kwargs["dtype"])
        )
    tokenizer = AutoTokenizer.from_pretrained(str(final_dir))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))  # writes chat_template.jinja: the one trained with
    return out
