#!/usr/bin/env bash
# W2 through `xtuner train` (XTuner v0's QLoRA config, with varlen attention) under torch's
# profiler (mmengine's ProfilerHook) for steps 12-14: where the ~100 ms that `xtuner train`
# adds to W2's bare forward and backward go (#19; the bare pass is w2_lora_levers.py).
# From the repo root of a GPU machine with the carried wheels (.whl, see common.sh):
#   bash tests/gpu/w2_train_profile.sh
# Prints the operators by self CUDA time, each step's time and where the GPU waited
# (tests/gpu/trace_gaps.py), and writes a Chrome trace (open it in chrome://tracing or
# Perfetto) to $BENCH_OUT/trace.json. Extra arguments go to --cfg-options
# (e.g. model.fused_lora=False).
set -uo pipefail
out=${BENCH_OUT:-/tmp/w2-profile}
mkdir -p "$out" /tmp/wl
source tests/gpu/common.sh
export PYTHONPATH=/tmp/site:$PWD
[ -d /tmp/wl/llama3_8b ] || python3 tests/gpu/v0_reference/make_model_and_data.py /tmp/wl \
  llama3_8b > /dev/null 2>&1
cfg="$out/w2_profile.py"
# The v0 config with mmengine's profiler added to its hooks (ThroughputHook is imported there).
cat tests/gpu/v0_reference/w2_llama3_8b_qlora_2k.py - > "$cfg" <<PY
from mmengine.hooks import ProfilerHook
custom_hooks = [dict(type=ThroughputHook), dict(
    type=ProfilerHook, by_epoch=False, profile_times=14, activity_with_cuda=True,
    schedule=dict(wait=10, warmup=1, active=3),
    on_trace_ready=dict(type='log_trace', sort_by='self_cuda_time_total', row_limit=30),
    json_trace_path='$out/trace.json')]
PY
timeout ${STEP_TIMEOUT:-400} python3 -m xtuner train "$cfg" --work-dir "$out/work" --seed 0 \
  --cfg-options model.use_varlen_attn=True train_dataloader.dataset.use_varlen_attn=True \
  train_dataloader.collate_fn.use_varlen_attn=True train_cfg.max_iters=16 \
  default_hooks.logger.interval=1 log_processor.window_size=1 "$@" > "$out/train.log" 2>&1
echo "== w2 profile rc=$?"
grep -B3 -A34 "Self CUDA %" "$out/train.log" | cut -c1-230 | head -40
grep "Iter(train)" "$out/train.log" | grep -oE "\[ *[0-9]+/[0-9]+\]| time: [0-9.]+" | paste -sd' ' \
  | sed 's/ \[/\n[/g'
grep -E "Error|error:" "$out/train.log" | grep -v error_if_nonfinite | tail -3
[ -f "$out/trace.json" ] && python3 tests/gpu/trace_gaps.py "$out/trace.json"
