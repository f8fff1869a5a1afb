#!/usr/bin/env bash
# Losses unchanged by the memory plan (#20): the first 50 steps with and without
# --memory-budget, on one GPU, from the repo root, with the carried wheels (.whl):
#   * the QLoRA demo (demo_tiny_qlora_colorist_e40) at the smallest budget its plan accepts
#     (every lever the run can take; read from the one-line refusal of a 1MB budget);
#   * W2 (tests/gpu/v0_reference/w2_llama3_8b_qlora_2k.py, the v0 config) at 8GB.
# Prints, for each pair, the levers taken and the max / mean |loss difference| per step.
set -uo pipefail
out=${BENCH_OUT:-/tmp/xtuner-plan-losses}
mkdir -p "$out" /tmp/wl
source tests/gpu/common.sh
export PYTHONPATH=/tmp/site:$PWD
train() {  # name, config, extra args
  local name=$1 cfg=$2; shift 2
  timeout ${STEP_TIMEOUT:-240} python3 -m xtuner train "$cfg" --work-dir "$out/$name" --seed 0 \
    "$@" > "$out/$name.log" 2>&1
  echo "== $name rc=$?"
  grep -h "memory plan" "$out/$name.log" | cut -c1-300
}
compare() {  # log a, log b
  python3 tests/gpu/compare_losses.py "$1 vs $2" "$out/$1.log" "$out/$2.log"
}
demo=(--cfg-options train_cfg.max_epochs=5 default_hooks.logger.interval=1
      default_hooks.checkpoint.interval=100000)
train demo_plain demo_tiny_qlora_colorist_e40 "${demo[@]}"
smallest=$(timeout 240 python3 -m xtuner train demo_tiny_qlora_colorist_e40 \
  --work-dir "$out/probe" --memory-budget 1MB 2>&1 | grep -o "smallest budget that fits is [0-9.]*[MG]B" \
  | grep -o "[0-9.]*[MG]B")
echo "demo: smallest budget ${smallest:-?}"
train demo_planned demo_tiny_qlora_colorist_e40 --memory-budget "${smallest:-1GB}" "${demo[@]}"
compare demo_plain demo_planned
[ -d /tmp/wl/llama3_8b ] || python3 tests/gpu/v0_reference/make_model_and_data.py /tmp/wl llama3_8b \
  > /dev/null 2>&1
w2=(--cfg-options train_cfg.max_iters=50 default_hooks.logger.interval=1)
train w2_plain tests/gpu/v0_reference/w2_llama3_8b_qlora_2k.py "${w2[@]}"
train w2_8gb tests/gpu/v0_reference/w2_llama3_8b_qlora_2k.py --memory-budget 8GB "${w2[@]}"
compare w2_plain w2_8gb
