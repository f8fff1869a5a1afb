"""W1 under DeepSpeed ZeRO-2 and ZeRO-3 on one GPU and on two (issue #21).

    python3 tests/gpu/multi_gpu_w1.py [--steps 30] [--stages deepspeed_zero2 deepspeed_zero3]

From the repo root of a machine with 2 GPUs and the carried wheels (``.whl``, ``.whlref``;
see ``tests/gpu/common.sh``). W1 is XTuner v0's benchmark config
(``tests/gpu/v0_reference/w1_qwen2_1_5b_full_8k.py``: a Qwen2-1.5B shape with random weights,
packed 8k rows, batch 1, constant learning rate) with varlen attention, through ``xtuner
train``. For each ZeRO stage it runs

* two GPUs, one row each per optimizer step, ``--steps`` steps;
* one GPU with ``accumulative_counts=2``, ``2 * --steps`` micro-batches: the same global batch.

The sampler deals the shuffled rows ``r1, r2, r3, ...`` to one GPU in that order and to two
GPUs as ``r1, r3, ...`` (rank 0) and ``r2, r4, ...`` (rank 1). So rank 0's step ``k`` and the
one-GPU micro-batch ``2k - 1`` run the same row on the same weights (after ``k - 1`` identical
optimizer steps): their losses must agree within bf16 noise, and so must the steps' gradient
norms. The log shows each iteration's own values (``log_processor.window_size=1``: the
default window of 10 averages the last losses, which differ between the two runs). Prints, per
stage, the first losses side by side, the largest difference, and tokens/s per GPU over the
last 10 iterations with peak memory. The one-GPU run takes half as many optimizer steps per
token, so its rate is slightly favoured: the ratio is a lower bound.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from compare_v0 import BENCH, ITER, REPO, VARLEN, _run  # the same directory

CONFIG = BENCH / "w1_qwen2_1_5b_full_8k.py"


def _train(name: str, stage: str, gpus: int, iters: int, accumulate: int, out: Path) -> Path:
    log = out / f"{name}.log"
    devices = dict(CUDA_VISIBLE_DEVICES="0") if gpus == 1 else dict(NPROC_PER_NODE=str(gpus))
    rc = _run([sys.executable, "-m", "xtuner", "train", str(CONFIG), "--work-dir",
               str(out / name), "--deepspeed", stage, "--cfg-options", *VARLEN,
               f"train_cfg.max_iters={iters}", f"optim_wrapper.accumulative_counts={accumulate}",
               "default_hooks.logger.interval=1", "log_processor.window_size=1"],
              log, f"/tmp/site:{REPO}", REPO, **devices)
    print(f"== {name} rc={rc}", flush=True)
    return log


def _rows(log: Path) -> dict[int, str]:
    return {int(m.group(1)): m.group(2)
            for m in map(ITER.search, log.read_text(errors="replace").splitlines()) if m}


def _value(row: str, key: str) -> float | None:
    m = re.search(rf"\b{key}: ([0-9.]+)", row)
    return float(m.group(1)) if m else None


def _tokens_per_sec(rows: dict[int, str], last: int = 10) -> float | None:
    """Tokens over time of the last ``last`` iterations (each logged with its own rate)."""
    window = [rows[k] for k in sorted(rows)[-last:]]
    times = [_value(r, "time") for r in window]
    rates = [_value(r, "tokens_per_sec") for r in window]
    if not window or None in times or None in rates:
        return None
    return sum(r * t for r, t in zip(rates, times)) / sum(times)


def _rate(rows: dict[int, str]) -> str:
    rate = _tokens_per_sec(rows)
    if rate is None:
        return "failed"
    memory = max(_value(r, "memory") or 0 for r in rows.values()) / 1024
    return f"{rate:,.0f} tok/s per GPU, peak {memory:.1f} GB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--stages", nargs="+", default=["deepspeed_zero2", "deepspeed_zero3"])
    parser.add_argument("--out", default="/tmp/multi_gpu_w1")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", "-c", "source tests/gpu/common.sh && install_reference"],
                   cwd=REPO, check=True)
    subprocess.run([sys.executable, str(CONFIG.parent / "make_model_and_data.py"), "/tmp/wl",
                    "qwen2_1_5b"], env=dict(os.environ, PYTHONPATH="/tmp/ref"), check=True,
                   stdout=subprocess.DEVNULL)
    for stage in args.stages:
        two = _rows(_train(f"{stage}_x2", stage, 2, args.steps, 1, out))
        one = _rows(_train(f"{stage}_x1_acc2", stage, 1, 2 * args.steps, 2, out))
        print(f"{stage}: 1 GPU (accumulating 2) {_rate(one)}; 2 GPUs {_rate(two)}")
        if _tokens_per_sec(two) and _tokens_per_sec(one):
            ratio = _tokens_per_sec(two) / _tokens_per_sec(one)
            print(f"{stage}: per-GPU rate on 2 GPUs / 1 GPU = {ratio:.3f}")
        pairs = [(k, _value(two[k], "loss"), _value(one.get(2 * k - 1, ""), "loss"),
                  _value(two[k], "grad_norm"), _value(one.get(2 * k, ""), "grad_norm"))
                 for k in sorted(two)]
        pairs = [p for p in pairs if p[2] is not None]
        if not pairs:
            print(f"{stage}: no losses to compare")
            continue
        print(f"{stage}: step: loss 2 GPUs (rank 0) / 1 GPU | grad norm 2 GPUs / 1 GPU")
        for k, a, b, ga, gb in pairs[:10]:
            print(f"  {k:3d}: {a:.4f} / {b:.4f} | {ga} / {gb}")
        worst = max(abs(a - b) for _, a, b, *_ in pairs)
        worst_rel = max(abs(a - b) / abs(b) for _, a, b, *_ in pairs if b)
        print(f"{stage}: {len(pairs)} steps compared, largest loss difference {worst:.4f} "
              f"({100 * worst_rel:.2f}%)", flush=True)
    print(f"logs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
