#!/usr/bin/env bash
# The README's quickstart, offline on CPU: SFT then GRPO of the built-in tiny model on the
# shipped sample reports, then the format-valid rate of the untrained model, after SFT and
# after GRPO on the held-out split. Run directories go to $QUICKSTART_DIR (default: runs/);
# QUICKSTART_SEED=N trains both steps (and draws the tiny model's weights) with seed N instead
# of the recipes' seed 0, on the same held-out split (bench/bench_quickstart.py uses it to
# measure how much the rates move with the seed).
# One progress line per stage; LLMSCISCI_VERBOSITY=quiet or =verbose prints less or everything.
set -euo pipefail
export HF_HUB_OFFLINE=1
out="${QUICKSTART_DIR:-runs}"
start=$SECONDS
seed=()
if [[ -n "${QUICKSTART_SEED:-}" ]]; then seed=(--set "train.seed=$QUICKSTART_SEED" --set data.split.seed=0); fi

llmscisci run builtin:quickstart/sft_tiny --overwrite --output-dir "$out/quickstart_sft" ${seed[@]+"${seed[@]}"}
llmscisci run builtin:quickstart/grpo_tiny --overwrite --output-dir "$out/quickstart_grpo" \
  --set "model.name_or_path=$out/quickstart_sft/final" ${seed[@]+"${seed[@]}"}
llmscisci eval "$out/quickstart_sft" --reference   # reference = the untrained tiny model
llmscisci eval "$out/quickstart_grpo"

python - "$out" $((SECONDS - start)) <<'PY'
import json, sys
out, seconds = sys.argv[1], sys.argv[2]
sft = json.load(open(f"{out}/quickstart_sft/eval/report.json"))
grpo = json.load(open(f"{out}/quickstart_grpo/eval/report.json"))
rate = lambda rep, model: rep[model]["overall"]["format_valid_rate"]
if sft["test_set_sha256"] != grpo["test_set_sha256"]:  # side by side only on one test set
    sys.exit(f"the SFT and GRPO evals used different test sets: {sft['test_set_sha256']} "
             f"and {grpo['test_set_sha256']}")
print()
print("format-valid rate on the held-out split:")
print(f"  untrained tiny model  {rate(sft, 'reference'):6.1%}")
print(f"  after SFT             {rate(sft, 'policy'):6.1%}")
print(f"  after SFT + GRPO      {rate(grpo, 'policy'):6.1%}")
print(f"quickstart took {seconds} s; reports: {out}/quickstart_sft/eval/report.md, {out}/quickstart_grpo/eval/report.md")
PY
