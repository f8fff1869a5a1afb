#!/usr/bin/env bash
# GPU checks of the training surface, run on a lent GPU machine from the repo root:
#   bash tests/gpu/run_checks.sh single     # one GPU: pytest -m gpu + demo runs (full/LoRA/QLoRA, +/- ZeRO)
#   bash tests/gpu/run_checks.sh multi      # two GPUs: NPROC_PER_NODE=2 with ZeRO-2/ZeRO-3/QLoRA+ZeRO-3
# Prints the last logged losses of each run. Expects the dependencies installed (see
# ../shared/gpu/prepare-wheels.sh for machines without them).
set -uo pipefail
mode=${1:-single}
out=${OUT:-/tmp/xtuner-gpu}
mkdir -p "$out"
run() {  # name, then xtuner train arguments
  local name=$1; shift
  local t0=$SECONDS
  # shellcheck disable=SC2068
  python -m xtuner train "$@" --work-dir "$out/$name" > "$out/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc ($((SECONDS - t0)) s)"
  grep -o "Iter(train) \[ *[0-9]*/[0-9]*\].*loss: [0-9.]*" "$out/$name.log" \
    | sed -E 's/lr:.*(loss: [0-9.]+)/\1/' | sed -n '1p;$p'
  grep -E "Error|error:" "$out/$name.log" | grep -v "error_if_nonfinite" | tail -3
}
short=(--cfg-options train_cfg.max_epochs=6)
if [ "$mode" = single ]; then
  python -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 | tail -5
  run full_amp demo_tiny_full_colorist_e40 "${short[@]}"
  run full_zero2 demo_tiny_full_colorist_e40 --deepspeed deepspeed_zero2 "${short[@]}"
  run lora_amp demo_tiny_lora_colorist_e40 "${short[@]}"
  run lora_zero2 demo_tiny_lora_colorist_e40 --deepspeed deepspeed_zero2 "${short[@]}"
  run qlora_amp demo_tiny_qlora_colorist_e40 "${short[@]}"
  run qlora_zero2 demo_tiny_qlora_colorist_e40 --deepspeed deepspeed_zero2 "${short[@]}"
  run full_zero3 demo_tiny_full_colorist_e40 --deepspeed deepspeed_zero3 "${short[@]}"
  run full_zero2_offload demo_tiny_full_colorist_e40 --deepspeed deepspeed_zero2_offload "${short[@]}"
  run full_zero3_offload demo_tiny_full_colorist_e40 --deepspeed deepspeed_zero3_offload "${short[@]}"
  # HF export at the end of a run, under DeepSpeed ZeRO-3, for a full and a LoRA run.
  for name in full lora; do
    python -m xtuner copy-cfg "demo_tiny_${name}_colorist_e40" "$out" > /dev/null 2>&1
    echo "custom_hooks.append(dict(type='xtuner.engine.hooks.HFCheckpointHook'))" \
      >> "$out/demo_tiny_${name}_colorist_e40_copy.py"
    run "${name}_zero3_hf" "$out/demo_tiny_${name}_colorist_e40_copy.py" \
      --deepspeed deepspeed_zero3 "${short[@]}"
    ls "$out/${name}_zero3_hf/hf_model"
  done
else
  # Same global batch (2 rows) on one GPU and on two: the first losses should agree.
  parity=(--cfg-options train_cfg.max_epochs=1 default_hooks.logger.interval=1)
  CUDA_VISIBLE_DEVICES=0 run one_gpu_bs2 demo_tiny_full_colorist_e40 "${parity[@]}" \
    train_dataloader.batch_size=2
  for ds in deepspeed_zero2 deepspeed_zero3; do
    CUDA_VISIBLE_DEVICES=0 run "one_gpu_bs2_$ds" demo_tiny_full_colorist_e40 --deepspeed $ds \
      "${parity[@]}" train_dataloader.batch_size=2
    NPROC_PER_NODE=2 run "two_gpu_bs1_$ds" demo_tiny_full_colorist_e40 --deepspeed $ds \
      "${parity[@]}" train_dataloader.batch_size=1
  done
  for f in "$out"/one_gpu_bs2*.log "$out"/two_gpu_bs1*.log; do
    echo "$(basename "$f"): $(grep -o 'loss: [0-9.]*' "$f" | head -5 | cut -d' ' -f2 | tr '\n' ' ')"
  done
  export NPROC_PER_NODE=2
  run ddp2 demo_tiny_full_colorist_e40 "${short[@]}"
  run full_zero2_x2 demo_tiny_full_colorist_e40 --deepspeed deepspeed_zero2 "${short[@]}"
  run full_zero3_x2 demo_tiny_full_colorist_e40 --deepspeed deepspeed_zero3 "${short[@]}"
  run qlora_zero3_x2 demo_tiny_qlora_colorist_e40 --deepspeed deepspeed_zero3 "${short[@]}"
fi
