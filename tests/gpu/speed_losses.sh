#!/usr/bin/env bash
# Losses unchanged by the speed work (#19): the first 50 steps of W1 (v0's config, varlen)
# with xtuner's defaults and with the plain path (liger kernels off, torch's foreach AdamW,
# no activation checkpointing), on one GPU, from the repo root, with the carried wheels
# (.whl; .whlref makes the random-weight model). Prints the max / mean |loss difference|.
# (The demo's pair is `run_benchmarks.sh w1`'s `losses`; W2's planned pair is
# memory_plan_losses.sh.)
set -uo pipefail
out=${BENCH_OUT:-/tmp/xtuner-speed-losses}
mkdir -p "$out" /tmp/wl
source tests/gpu/common.sh
install_reference
PYTHONPATH=/tmp/ref python3 tests/gpu/v0_reference/make_model_and_data.py /tmp/wl qwen2_1_5b \
  > /dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD
cfg=tests/gpu/v0_reference/w1_qwen2_1_5b_full_8k.py
common=(train_cfg.max_iters=50 default_hooks.logger.interval=1 model.use_varlen_attn=True
        train_dataloader.dataset.use_varlen_attn=True train_dataloader.collate_fn.use_varlen_attn=True)
for variant in fast plain; do
  extra=()
  [ $variant = plain ] && extra=(model.use_liger_kernel=False model.use_activation_checkpointing=False
                                 optim_wrapper.optimizer.fused=False)
  timeout 280 python3 -m xtuner train $cfg --work-dir "$out/w1_$variant" --seed 0 \
    --cfg-options "${common[@]}" "${extra[@]}" > "$out/w1_$variant.log" 2>&1
  echo "== w1_$variant rc=$?"
done
python3 tests/gpu/compare_losses.py "W1, fast vs plain" "$out/w1_fast.log" "$out/w1_plain.log"
