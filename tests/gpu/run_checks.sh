#!/usr/bin/env bash
# GPU checks of the training surface, run on a lent GPU machine from the repo root:
#   bash tests/gpu/run_checks.sh single     # one GPU: pytest -m gpu + demo runs (full/LoRA/QLoRA, +/- ZeRO)
#   bash tests/gpu/run_checks.sh multi      # two GPUs: NPROC_PER_NODE=2 with ZeRO-2/ZeRO-3/QLoRA+ZeRO-3
#   bash tests/gpu/run_checks.sh export     # two GPUs: offload, HF export hook, convert a ZeRO-3
#                                           # checkpoint, merge, chat --bits 4
#   bash tests/gpu/run_checks.sh families   # two GPUs: the LLaVA, DPO and encoder + LLM demos under
#                                           # ZeRO-3 (train; resume from iteration K and compare
#                                           # the losses after it; pth_to_hf with its parity
#                                           # check), and the Python API examples under torchrun
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
  python3 -m xtuner train "$@" --work-dir "$out/$name" > "$out/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc ($((SECONDS - t0)) s)"
  grep -o "Iter(train) \[ *[0-9]*/[0-9]*\].*loss: [0-9.]*" "$out/$name.log" \
    | sed -E 's/lr:.*(loss: [0-9.]+)/\1/' | sed -n '1p;$p'
  grep -E "Error|error:" "$out/$name.log" | grep -v "error_if_nonfinite" | tail -3
}
short=(--cfg-options train_cfg.max_epochs=6)
latest() { ls -d "$1"/iter_*.pth | sort -V | tail -1; }
losses_after() {  # log, iteration: "iter:loss" of every logged iteration after it
  grep -oE "Iter\(train\) \[ *[0-9]+/[0-9]+\].*loss: [0-9.]+" "$1" \
    | sed -E 's/Iter\(train\) \[ *([0-9]+)\/.*loss: ([0-9.]+)$/\1:\2/' | awk -F: -v k="$2" '$1 > k'
}
if [ "$mode" = families ]; then
  K=${K:-8}  # the checkpoint to resume from
  # iter_K must survive the run; each iteration logs its own loss (the default window of 10
  # would average over iterations the resumed run never logged)
  # EPOCHS shortens the demos (on 2 GPUs 1.5 epochs are 87 LLaVA, 28 DPO and 17 encoder + LLM
  # iterations; the LLaVA demo's 12 epochs are 696)
  every=(--cfg-options default_hooks.logger.interval=1 default_hooks.checkpoint.interval=$K
         default_hooks.checkpoint.max_keep_ckpts=-1 log_processor.window_size=1
         train_cfg.max_epochs=${EPOCHS:-1.5})
  # FAMILIES / EXAMPLES (space-separated, may be empty) split the mode over calls
  for cfg in ${FAMILIES-demo_tiny_llava_shapes_e12 demo_tiny_dpo_colorist_e6 demo_tiny_ts_signals_e16}; do
    name=${cfg#demo_tiny_}
    NPROC_PER_NODE=2 run "${name}_z3" "$cfg" --deepspeed deepspeed_zero3 "${every[@]}"
    NPROC_PER_NODE=2 run "${name}_z3_resumed" "$cfg" --deepspeed deepspeed_zero3 \
      --resume "$out/${name}_z3/iter_$K.pth" "${every[@]}"
    paste -d' ' <(losses_after "$out/${name}_z3.log" "$K") \
      <(losses_after "$out/${name}_z3_resumed.log" "$K") | awk -v n="$name" '
      { split($1, a, ":"); split($2, b, ":"); d = a[2] - b[2]; d = d < 0 ? -d : d;
        if (a[1] != b[1]) bad = 1; if (d > m) m = d; c++ }
      END { printf "%s resume from iteration '"$K"': %d later losses, max |diff| %g%s\n",
            n, c, m, bad ? " (iterations differ)" : "" }'
    python3 -m xtuner convert pth_to_hf "$cfg" "$(latest "$out/${name}_z3")" "$out/${name}_hf" \
      --overwrite > "$out/convert_$name.log" 2>&1
    echo "convert $name rc=$?: $(grep -E "Parity|Saved|rror" "$out/convert_$name.log" | tail -3)"
  done
  for example in ${EXAMPLES-example_sft example_image_text}; do  # 1 GPU, then 2, same global batch
    for n in 1 2; do
      EXAMPLE_WORK_DIR="$out/${example}_x$n" EXAMPLE_ASSETS="$out/image_text_assets" \
        torchrun --nproc-per-node $n "tests/train/$example.py" > "$out/${example}_x$n.log" 2>&1
      echo "== ${example} on $n GPU(s) rc=$?: losses $(losses_after "$out/${example}_x$n.log" 0 \
        | cut -d: -f2 | head -6 | tr '\n' ' ')"
    done
  done
elif [ "$mode" = export ]; then
  [ -z "${SKIP_OFFLOAD:-}" ] && CUDA_VISIBLE_DEVICES=0 run full_zero2_offload demo_tiny_full_colorist_e40 \
    --deepspeed deepspeed_zero2_offload "${short[@]}"
  [ -z "${SKIP_OFFLOAD:-}" ] && CUDA_VISIBLE_DEVICES=0 run full_zero3_offload demo_tiny_full_colorist_e40 \
    --deepspeed deepspeed_zero3_offload "${short[@]}"
  prompt="Give me the hex code for alice blue, an off-white with a hint of blue."
  for name in full lora; do
    # A whole demo run on two GPUs under ZeRO-3, with the HF export hook added.
    cfg="$out/demo_tiny_${name}_colorist_e40_copy.py"
    if [ ! -f "$cfg" ]; then
      python3 -m xtuner copy-cfg "demo_tiny_${name}_colorist_e40" "$out" > /dev/null 2>&1
      echo "custom_hooks.append(dict(type='xtuner.engine.hooks.HFCheckpointHook'))" >> "$cfg"
    fi
    [ -f "$out/${name}_zero3_x2/last_checkpoint" ] ||
      NPROC_PER_NODE=2 run "${name}_zero3_x2" "$cfg" --deepspeed deepspeed_zero3
    echo "hf_model: $(ls "$out/${name}_zero3_x2/hf_model" | tr '\n' ' ')"
    ckpt=$(latest "$out/${name}_zero3_x2")
    python3 -m xtuner convert pth_to_hf "$cfg" "$ckpt" "$out/${name}_hf" > "$out/convert_$name.log" 2>&1
    echo "convert $name rc=$?: $(grep -E "Parity|Saved|rror" "$out/convert_$name.log" | tail -3)"
  done
  python3 -m xtuner convert merge xtuner/demo/tiny_llm "$out/lora_hf" "$out/lora_merged" \
    > "$out/merge.log" 2>&1
  echo "merge rc=$?: $(grep -E "Parity|Saved|rror" "$out/merge.log" | tail -3)"
  for model in full_hf lora_merged; do
    for bits in none 4; do
      extra=(); [ "$bits" = 4 ] && extra=(--bits 4)
      answer=$(python3 -m xtuner chat "$out/$model" "${extra[@]}" --prompt-template qwen_chat \
        --temperature 0 --max-new-tokens 12 --prompt "$prompt" 2> "$out/chat_${model}_$bits.err")
      echo "chat $model bits=$bits rc=$?: $answer $(grep -E "rror" "$out/chat_${model}_$bits.err" | tail -2)"
    done
  done
elif [ "$mode" = single ]; then
  python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 | tail -5
  run full_amp demo_tiny_full_colorist_e40 "${short[@]}"
  run full_zero2 demo_tiny_full_colorist_e40 --deepspeed deepspeed_zero2 "${short[@]}"
  run lora_amp demo_tiny_lora_colorist_e40 "${short[@]}"
  run lora_zero2 demo_tiny_lora_colorist_e40 --deepspeed deepspeed_zero2 "${short[@]}"
  run qlora_amp demo_tiny_qlora_colorist_e40 "${short[@]}"
  run qlora_zero2 demo_tiny_qlora_colorist_e40 --deepspeed deepspeed_zero2 "${short[@]}"
  run full_zero3 demo_tiny_full_colorist_e40 --deepspeed deepspeed_zero3 "${short[@]}"
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
