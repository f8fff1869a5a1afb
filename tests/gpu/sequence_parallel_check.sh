#!/usr/bin/env bash
# Sequence parallel on GPUs (issue 18), from the repo root of a lent machine with 2 GPUs:
#   bash tests/gpu/sequence_parallel_check.sh [RUN ...]   (default: all five runs below)
# The tiny demo with sequence_parallel_size = 2 and SequenceParallelSampler: one GPU (N = 1)
# against two GPUs (N = 2; one data-parallel group, so the same batches), plain runner (DDP,
# NCCL) and DeepSpeed ZeRO-2/ZeRO-3. Prints each run's per-iteration losses (bf16 training:
# expect agreement to ~1e-2, not bit-identical). Dependencies as for run_checks.sh.
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
losses() {  # work dir -> "iter:loss ..." from scalars.json
  python3 - "$1" <<'PY'
import json, pathlib, sys
(run,) = [p for p in pathlib.Path(sys.argv[1]).iterdir() if p.is_dir()]
rows = [json.loads(l) for l in (run / "vis_data" / "scalars.json").read_text().splitlines()]
print(" ".join(f"{r['iter']}:{r['loss']:.4f}" for r in rows if "loss" in r))
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
opts=(--cfg-options train_cfg.max_epochs=0.6 default_hooks.logger.interval=1
      default_hooks.checkpoint.interval=1000)
for name in ${*:-one_gpu ddp_sp2 one_gpu_zero2 zero2_sp2 zero3_sp2}; do
  case $name in
    one_gpu) CUDA_VISIBLE_DEVICES=0 run one_gpu 1 "${opts[@]}" sequence_parallel_size=1 ;;
    ddp_sp2) run ddp_sp2 2 "${opts[@]}" ;;
    one_gpu_zero2) CUDA_VISIBLE_DEVICES=0 run one_gpu_zero2 1 --deepspeed deepspeed_zero2 \
                     "${opts[@]}" sequence_parallel_size=1 ;;
    zero2_sp2) run zero2_sp2 2 --deepspeed deepspeed_zero2 "${opts[@]}" ;;
    zero3_sp2) run zero3_sp2 2 --deepspeed deepspeed_zero3 "${opts[@]}" ;;
  esac
done
