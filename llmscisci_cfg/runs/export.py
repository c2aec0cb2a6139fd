"""``llmscisci export RUN --merge``: a plain model directory that transformers loads offline.

A LoRA run's ``final/`` is merged into its base (rebuilt or reloaded unquantized, per the
manifest); a full fine-tune is re-saved. The tokenizer carries the training chat template.
The files get the mode a plain ``open`` gives under the umask; an output folder inside the
run directory joins the run's inventory (``run --overwrite`` may then remove it).
"""

from __future__ import annotations

from pathlib import Path

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.runs.rundir import RunDir, RunLock, claim, plain_modes

DEFAULT_DIR = "exported"


def export_run(run_dir: str | Path, merge: bool, output: str | Path | None = None) -> Path:
    """Save ``run_dir``'s model + tokenizer into ``output`` (default ``RUN_DIR/exported``)."""
    from llmscisci_cfg.models.load import quiet_bitsandbytes

    quiet_bitsandbytes()
    run = RunDir.open(run_dir)
    with RunLock(run.path):
        return _export(run, merge, output)


def _export(run: RunDir, merge: bool, output: str | Path | None) -> Path:
    from llmscisci_cfg.models.load import (
        LoadSpec,
        load_merged,
        load_pretrained,
        load_tokenizer_dir,
    )

    final_dir = run.require_final()
    out = Path(output) if output else run.path / DEFAULT_DIR
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: output directory is not empty; remove it or pass -o DIR")
    compiled = run.manifest.get("compiled")
    model_kwargs = compiled.get("model_kwargs") if isinstance(compiled, dict) else None
    mk = model_kwargs or {}
    spec = LoadSpec(
        dtype=mk.get("dtype") or "float32",
        trust_remote_code=bool(mk.get("trust_remote_code")),
        revision=mk.get("revision"),
    )
    if run.final.kind == "adapter":
        if not merge:
            raise UserError(
                f"{final_dir} holds a LoRA adapter; pass --merge to merge it into the base weights"
            )
        model = load_merged(run.path, spec)
    else:
        model = load_pretrained(str(final_dir), spec, str(final_dir))
    tokenizer = load_tokenizer_dir(final_dir)
    out.mkdir(parents=True, exist_ok=True)
    inside = out.resolve().is_relative_to(run.path.resolve())
    if inside:  # claimed before writing: a failed export can be removed with the run
        claim(run.path, [out.resolve().relative_to(run.path.resolve()).as_posix() + "/"])
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))  # writes chat_template.jinja: the one trained with
    plain_modes(out)  # safetensors writes its weights 0600
    return out
