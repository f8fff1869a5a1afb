#!/usr/bin/env bash
# W2 (QLoRA r=64, Llama-3-8B shape, packed 2048) under memory levers, one H200, from the repo
# root: tokens/s and peak memory of each variant (name=cfg-options...), e.g.
#   bash tests/gpu/w2_memory_levers.sh default= \
#     gc_all=model.use_activation_checkpointing=True \
#     gc_all_8bit="model.use_activation_checkpointing=True optim_wrapper.optimizer.type=PagedAdamW8bit"
# MEM_LIMIT_GB=8 caps the process (torch.cuda.set_per_process_memory_fraction) as an 8 GB
# card would. Needs the carried wheels in .whl (../shared/gpu/prepare-wheels.sh).
set -uo pipefail
out=${BENCH_OUT:-/tmp/xtuner-bench}
mkdir -p "$out" /tmp/wl
source tests/gpu/common.sh
export PYTHONPATH=/tmp/site:$PWD
[ -d /tmp/wl/llama3_8b ] || python3 tests/gpu/v0_reference/make_model_and_data.py /tmp/wl llama3_8b \
  > /dev/null 2>&1
for spec in "$@"; do
  name=${spec%%=*}; opts=${spec#*=}
  t0=$SECONDS
  # shellcheck disable=SC2086
  timeout ${BENCH_TIMEOUT:-240} python3 tests/gpu/xtuner_cli.py benchmark benchmark_w2_llama3_8b_qlora_2k \
    --steps ${STEPS:-10} --warmup ${WARMUP:-4} ${EXTRA:-} \
    --cfg-options model.llm.pretrained_model_name_or_path=/tmp/wl/llama3_8b $opts \
    > "$out/$name.log" 2>&1
  echo "== $name rc=$? ($((SECONDS - t0)) s): $opts"
  sed -n '/tokens\/s per GPU/,/^model FLOPs/p' "$out/$name.log" | grep -v "^model FLOPs"
  [[ "${EXTRA:-}" == *--profile* ]] && grep -A28 "Self CUDA %\|Self Device %" "$out/$name.log" \
    | cut -c1-200 | head -32
  grep -E "Error|error:|Activation checkpointing|QLoRA:|memory plan" "$out/$name.log" \
    | grep -v error_if_nonfinite | tail -4
done
