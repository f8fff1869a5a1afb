#!/usr/bin/env bash
# Speed runs on a lent GPU machine, from the repo root (the README's performance table):
#   bash tests/gpu/run_benchmarks.sh w1     # 1 GPU: XTuner 0.2.0 vs xtuner vs plain HF on W1,
#                                           # W1 under a 34 GB budget, demo loss fast vs plain
#   bash tests/gpu/run_benchmarks.sh w2     # 1 GPU: the same for W2 (QLoRA 8B), 10 GB budget,
#                                           # ZeRO-2 on one GPU
#   bash tests/gpu/run_benchmarks.sh compile  # 1 GPU: W1 with torch.compile of the layers
#   bash tests/gpu/run_benchmarks.sh multi  # 2 GPUs: W1 with ZeRO-2 on 1 and on 2 GPUs
#   bash tests/gpu/run_benchmarks.sh llava  # 1 GPU: LLaVA QLoRA 7B + CLIP-L/336, packed rows
#   bash tests/gpu/run_benchmarks.sh sitting  # 1 GPU, one sitting: W2 through XTuner 0.2.0,
#                                           # TRL and `xtuner train` (compiled and eager) at
#                                           # v0's memory and under 8 GiB (README's table)
#   bash tests/gpu/run_benchmarks.sh small  # 1 GPU, one sitting: W2 on an 8 GB GPU -- xtuner
#                                           # --memory-budget 8GB capped at 8 GiB, TRL's SFTTrainer
#                                           # (.whltrl: pip download trl==1.16.0 --no-deps), v0;
#                                           # ~9 min: SKIP_TRL=1 / SKIP_V0=1 / SKIP_OURS=1
#                                           # split it over calls
# MEM_LIMIT_GB=N caps xtuner's process as an N GiB card would (set_per_process_memory_fraction).
# XTuner 0.2.0 runs the configs of tests/gpu/v0_reference (BENCH) with its wheels
# in .whlref; xtuner's dependencies come from .whl (../shared/gpu/prepare-wheels.sh).
set -uo pipefail
mode=${1:-w1}
out=${BENCH_OUT:-/tmp/xtuner-bench}
BENCH=${BENCH:-$PWD/tests/gpu/v0_reference}
mkdir -p "$out" /tmp/wl
source tests/gpu/common.sh
ours_env() { PYTHONPATH=/tmp/site:$PWD "$@"; }
[ "$mode" != multi ] && [ "$mode" != llava ] && install_reference
v0() {  # name, config, extra args: XTuner 0.2.0's own train tool, tokens/s and memory
  local name=$1 cfg=$2; shift 2
  local t0=$SECONDS
  (cd /tmp/wl && PYTHONPATH=/tmp/ref timeout 240 python3 /tmp/ref/xtuner/tools/train.py "$cfg" \
    --work-dir "/tmp/wl/$name" "$@" > "$out/$name.log" 2>&1)
  echo "== $name rc=$? ($((SECONDS - t0)) s)"
  grep -o "Iter(train) \[ *[0-9]*/[0-9]*\].*" "$out/$name.log" \
    | grep -oE "\[ *[0-9]+/|memory: [0-9]+|tokens_per_sec: [0-9.]+|time: [0-9.]+" | paste -sd' ' \
    | sed 's/ \[/\n[/g' | tail -4
  grep -E "Error|error:" "$out/$name.log" | grep -v error_if_nonfinite | tail -3
}
bench() {  # name, then xtuner benchmark arguments
  local name=$1; shift
  local t0=$SECONDS
  ours_env timeout ${BENCH_TIMEOUT:-300} python3 tests/gpu/xtuner_cli.py benchmark "$@" --json "$out/$name.json" \
    > "$out/$name.log" 2>&1
  echo "== $name rc=$? ($((SECONDS - t0)) s)"
  sed -n '/tokens\/s per GPU/,/^model FLOPs/p' "$out/$name.log" | grep -v "^model FLOPs"
  [ -n "${PROFILE:-}" ] && grep -B2 -A30 "Self CUDA %\|Self Device %\|Self CPU %" "$out/$name.log" \
    | cut -c1-250 | head -36
  grep -E "Error|error:|Activation checkpointing" "$out/$name.log" | grep -v error_if_nonfinite | tail -4
}
trl_w2() {  # TRL's SFTTrainer on W2 (carried .whltrl); arguments: peer_trl.py flags, e.g. --gc
  [ -d .whltrl ] && [ -z "${SKIP_TRL:-}" ] || return 0
  [ -d /tmp/trl ] || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target /tmp/trl .whltrl/*.whl > /dev/null
  local name="trl_w2$(printf '%s' "$*" | tr -d ' -')"
  PYTHONPATH=/tmp/trl:/tmp/site timeout 300 python3 tests/gpu/peer_trl/peer_trl.py \
    /tmp/wl/llama3_8b /tmp/wl/alpaca.json w2 "$@" --steps 15 > "$out/$name.log" 2>&1
  echo "== $name rc=$?"; grep "^TRL" "$out/$name.log"
}
losses() {  # the demo's first 50 losses, fast defaults vs the plain path
  for variant in fast plain; do
    extra=()
    [ $variant = plain ] && extra=(model.use_liger_kernel=False model.use_activation_checkpointing=True
                                   optim_wrapper.optimizer.fused=False)
    ours_env python3 -m xtuner train demo_tiny_full_colorist_e40 --work-dir "$out/demo_$variant" \
      --seed 0 --cfg-options train_cfg.max_epochs=6 default_hooks.logger.interval=1 \
      default_hooks.checkpoint.interval=1000 "${extra[@]}" > "$out/demo_$variant.log" 2>&1
    echo "== demo_$variant rc=$?"
  done
  python3 tests/gpu/compare_losses.py "demo, fast vs plain" "$out/demo_fast.log" \
    "$out/demo_plain.log"
}
W1=benchmark_w1_qwen2_1_5b_full_8k
W2=benchmark_w2_llama3_8b_qlora_2k
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
case $mode in
  w1)
    PYTHONPATH=/tmp/ref python3 "$BENCH/make_model_and_data.py" /tmp/wl qwen2_1_5b > /dev/null 2>&1
    [ -z "${SKIP_V0:-}" ] && v0 v0_w1 "$BENCH/w1_qwen2_1_5b_full_8k.py"
    model=(--cfg-options model.llm.pretrained_model_name_or_path=/tmp/wl/qwen2_1_5b)
    bench w1 $W1 ${BASELINE-"--baseline"} ${PROFILE:-} --steps 20 "${model[@]}"
    bench w1_34gb $W1 --memory-budget 34GB --steps 20 "${model[@]}"
    bench w1_zero2 $W1 --deepspeed deepspeed_zero2 --steps 20 "${model[@]}"
    [ -z "${SKIP_V0:-}" ] && v0 v0_w1_zero2 "$BENCH/w1_qwen2_1_5b_full_8k.py" --deepspeed deepspeed_zero2
    [ -z "${SKIP_LOSSES:-}" ] && losses
    ;;
  compile)  # 1 GPU: W1 with and without torch.compile of the decoder layers
    PYTHONPATH=/tmp/ref python3 "$BENCH/make_model_and_data.py" /tmp/wl qwen2_1_5b > /dev/null 2>&1
    model=(--cfg-options model.llm.pretrained_model_name_or_path=/tmp/wl/qwen2_1_5b)
    bench w1 $W1 --steps 20 "${model[@]}"
    bench w1_compile $W1 --steps 20 --warmup 8 "${model[@]}" model.use_torch_compile=True
    bench w1_compile_34gb $W1 --steps 20 --warmup 8 --memory-budget 34GB "${model[@]}" \
      model.use_torch_compile=True
    ;;
  w2)
    PYTHONPATH=/tmp/ref python3 "$BENCH/make_model_and_data.py" /tmp/wl llama3_8b > /dev/null 2>&1
    model=(--cfg-options model.llm.pretrained_model_name_or_path=/tmp/wl/llama3_8b)
    bench w2 $W2 ${BASELINE-"--baseline"} ${PROFILE:-} --steps 15 "${model[@]}"
    [ -z "${SKIP_V0:-}" ] && v0 v0_w2 "$BENCH/w2_llama3_8b_qlora_2k.py"
    bench w2_10gb $W2 --memory-budget 10GB --steps 15 "${model[@]}"
    # DeepSpeed keeps the adapters 16-bit with float32 master weights in its optimizer: no
    # autocast casts of the adapters (W2 is launch-bound; see README Performance)
    bench w2_zero2 $W2 --deepspeed deepspeed_zero2 --steps 15 "${model[@]}"
    ;;
  w2compile)  # 1 GPU: W2 with a profile, and with torch.compile of the decoder layers
    PYTHONPATH=/tmp/ref python3 "$BENCH/make_model_and_data.py" /tmp/wl llama3_8b > /dev/null 2>&1
    model=(--cfg-options model.llm.pretrained_model_name_or_path=/tmp/wl/llama3_8b)
    PROFILE=--profile bench w2 $W2 --profile --steps 15 "${model[@]}"
    bench w2_compile $W2 --steps 15 --warmup 8 "${model[@]}" model.use_torch_compile=True
    ;;
  sitting)  # 1 GPU, one sitting through each project's own train tool (~8 min): XTuner
            # 0.2.0's W2 config, TRL with checkpointing, then xtuner in bfloat16, compiled and
            # eager in alternating order, at v0's memory and under 8 GiB (w2_options.py)
    PYTHONPATH=/tmp/site python3 "$BENCH/make_model_and_data.py" /tmp/wl llama3_8b > /dev/null 2>&1
    [ -z "${SKIP_V0:-}" ] && v0 v0_w2 "$BENCH/w2_llama3_8b_qlora_2k.py"
    trl_w2 --gc
    ours_env python3 tests/gpu/w2_options.py --bf16 --steps 30 --budgets 14.2GB 8GB \
      --variants use_torch_compile=True use_torch_compile=False --out "$out/w2"
    ;;
  small)  # #20 in one sitting: who trains W2 fastest on an 8 GB GPU
    PYTHONPATH=/tmp/ref python3 "$BENCH/make_model_and_data.py" /tmp/wl llama3_8b > /dev/null 2>&1
    model=(--cfg-options model.llm.pretrained_model_name_or_path=/tmp/wl/llama3_8b)
    if [ -z "${SKIP_OURS:-}" ]; then
      MEM_LIMIT_GB=8 bench w2_8gb_capped $W2 --memory-budget 8GB --steps 15 "${model[@]}"
      MEM_LIMIT_GB=8 bench w2_8gb_capped_nonreentrant $W2 --memory-budget 8GB --steps 15 \
        "${model[@]}" model.reentrant_checkpointing=False
      bench w2_14gb $W2 --memory-budget 14.5GB --steps 15 "${model[@]}"
      bench w2_14gb_nonreentrant $W2 --memory-budget 14.5GB --steps 15 "${model[@]}" \
        model.reentrant_checkpointing=False
      MEM_LIMIT_GB=8 bench w2_default_capped $W2 --steps 15 "${model[@]}"
    fi
    trl_w2 --gc
    trl_w2
    [ -z "${SKIP_V0:-}" ] && v0 v0_w2 "$BENCH/w2_llama3_8b_qlora_2k.py"
    [ -z "${SKIP_OURS:-}" ] && bench w2 $W2 --steps 15 "${model[@]}"
    ;;
  multi)
    # Only the architecture is needed: --random-init builds the weights.
    ours_env python3 -c "from transformers import Qwen2Config; Qwen2Config(hidden_size=1536,
      num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, intermediate_size=8960,
      vocab_size=151936, max_position_embeddings=32768,
      tie_word_embeddings=True).save_pretrained('/tmp/wl/qwen2_1_5b_config')"
    model=(--random-init --cfg-options model.llm.pretrained_model_name_or_path=/tmp/wl/qwen2_1_5b_config)
    CUDA_VISIBLE_DEVICES=0 bench w1_zero2_x1 $W1 --deepspeed deepspeed_zero2 --steps 20 "${model[@]}"
    NPROC_PER_NODE=2 bench w1_zero2_x2 $W1 --deepspeed deepspeed_zero2 --steps 20 "${model[@]}"
    ;;
esac
if [ "$mode" = llava ]; then  # 1 GPU: LLaVA fine-tune stage, QLoRA 7B + CLIP-L/336, packed
  ours_env python3 -c "from transformers import LlamaConfig, CLIPVisionConfig
LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
            intermediate_size=11008, vocab_size=32000,
            max_position_embeddings=4096).save_pretrained('/tmp/wl/vicuna_7b_config')
CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                 num_attention_heads=16, image_size=336, patch_size=14,
                 projection_dim=768).save_pretrained('/tmp/wl/clip_l336_config')"
  bench llava tests/gpu/llava_7b_qlora_clip_l336.py --random-init --steps 15
  bench llava_auto tests/gpu/llava_7b_qlora_clip_l336.py --random-init --steps 15 \
    --cfg-options model.use_activation_checkpointing=auto
fi
