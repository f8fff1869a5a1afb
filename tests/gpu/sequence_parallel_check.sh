#!/usr/bin/env bash
# Sequence parallel on GPUs (issue 18), from the repo root of a lent machine with 2 GPUs:
#   bash tests/gpu/sequence_parallel_check.sh [RUN ...]   (default: all six runs below)
# The tiny demo with sequence_parallel_size = 2 and SequenceParallelSampler: one GPU (N = 1)
# against two GPUs (N = 2; one data-parallel group, so the same batches), plain runner (DDP,
# NCCL) and DeepSpeed ZeRO-2/ZeRO-3. Prints each run's per-iteration losses (bf16 training:
# expect agreement to ~1e-2, not bit-identical) and gradient norms. `longest_row`: the W1 shape
# (Qwen2-1.5B, full fine-tuning, every layer checkpointed, random weights) through `xtuner
# benchmark`, N = 1 on one GPU at 32k tokens a row against N = 2 on two at 64k: equal peak
# memory per GPU means the longest row that fits doubles (each run also prints its estimate of
# the longest row). Dependencies as for run_checks.sh.
set -uo pipefail
out=${OUT:-/tmp/xtuner-sp}
mkdir -p "$out"
cfg="$out/demo_tiny_full_colorist_sp2.py"
python3 - "$cfg" <<'PY'
import sys
from xtuner.utils.paths import resolve_config
text = resolve_config("demo_tiny_full_colorist_e40").read_text()
text = text.replace("sampler=dict(type=DefaultSampler, shuffle=True)",
                    "sampler=dict(type=SequenceParallelSampler, shuffle=True)")
text = text.replace("use_varlen_attn = True\n", "use_varlen_attn = True\nsequence_parallel_size = 2\n")
open(sys.argv[1], "w").write("from xtuner.parallel.sequence import SequenceParallelSampler\n" + text)
PY
losses() {  # work dir -> "iter:loss/grad_norm ..." from scalars.json
  python3 - "$1" <<'PY'
import json, pathlib, sys
(scalars,) = pathlib.Path(sys.argv[1]).glob("*/vis_data/scalars.json")
rows = [json.loads(l) for l in scalars.read_text().splitlines()]
print(" ".join(f"{r['iter']}:{r['loss']:.4f}/{r.get('grad_norm', float('nan')):.4f}"
               for r in rows if "loss" in r))
PY
}
run() {  # name, nproc, then xtuner train arguments
  local name=$1 nproc=$2; shift 2
  local t0=$SECONDS
  NPROC_PER_NODE=$nproc python3 -m xtuner train "$cfg" --work-dir "$out/$name" "$@" \
    > "$out/$name.log" 2>&1
  echo "== $name rc=$? ($((SECONDS - t0)) s): $(losses "$out/$name" 2>/dev/null)"
  grep -E "Sequence parallel:|Error|error:" "$out/$name.log" | grep -v error_if_nonfinite | tail -2
}
opts=(--cfg-options train_cfg.max_epochs=0.6 default_hooks.logger.interval=1 log_processor.window_size=1
      default_hooks.checkpoint.interval=1000)
longest_row() {  # N, GPUs, tokens per row
  local t0=$SECONDS
  NPROC_PER_NODE=$2 python3 -m xtuner benchmark "$out/w1_sp.py" --random-init --warmup 2 --steps 3 \
    --seq-len "$3" --work-dir "$out/w1_sp$1" --cfg-options sequence_parallel_size="$1" \
    model.use_activation_checkpointing=True model.use_liger_kernel=False \
    model.llm.pretrained_model_name_or_path=/tmp/wl/qwen2_1_5b_config > "$out/w1_sp$1.log" 2>&1
  echo "== W1 shape, N = $1 on $2 GPU(s), $3-token rows rc=$? ($((SECONDS - t0)) s)"
  grep -E "tokens/s per GPU|peak allocated|step \(ms\)|longest packed row|Error|error:" \
    "$out/w1_sp$1.log" | grep -v error_if_nonfinite
}
for name in ${*:-one_gpu ddp_sp2 one_gpu_zero2 zero2_sp2 zero3_sp2 longest_row}; do
  case $name in
    one_gpu) CUDA_VISIBLE_DEVICES=0 run one_gpu 1 "${opts[@]}" sequence_parallel_size=1 ;;
    ddp_sp2) run ddp_sp2 2 "${opts[@]}" ;;
    one_gpu_zero2) CUDA_VISIBLE_DEVICES=0 run one_gpu_zero2 1 --deepspeed deepspeed_zero2 \
                     "${opts[@]}" sequence_parallel_size=1 ;;
    zero2_sp2) run zero2_sp2 2 --deepspeed deepspeed_zero2 "${opts[@]}" ;;
    zero3_sp2) run zero3_sp2 2 --deepspeed deepspeed_zero3 "${opts[@]}" ;;
    longest_row)
      python3 -c "from transformers import Qwen2Config; Qwen2Config(hidden_size=1536,
        num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
        intermediate_size=8960, vocab_size=151936, max_position_embeddings=131072,
        tie_word_embeddings=True).save_pretrained('/tmp/wl/qwen2_1_5b_config')"
      python3 -c "from xtuner.utils.paths import resolve_config
print(resolve_config('benchmark_w1_qwen2_1_5b_full_8k').read_text() + 'sequence_parallel_size = 1')" \
        > "$out/w1_sp.py"
      CUDA_VISIBLE_DEVICES=0 longest_row 1 1 32768
      longest_row 2 2 65536 ;;
  esac
done
