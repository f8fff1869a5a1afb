"""W2 through ``xtuner train`` with 16-bit LoRA adapters and float32 master weights
(``model.adapters_16bit=True``) and with peft's float32 adapters (the default), on one GPU, in
one sitting (issue #19).

    python3 tests/gpu/adapters_16bit.py [--budgets full 14.2GB 8GB] [--steps 40]

From the repo root of a GPU machine with the carried wheels (``.whl``; see
``tests/gpu/common.sh``). W2 is XTuner v0's QLoRA config
(``tests/gpu/v0_reference/w2_llama3_8b_qlora_2k.py``: a Llama-3-8B shape with random weights,
packed 2048-token rows, fp16 autocast, LoRA dropout 0.1) with varlen attention. For each
budget (``full``: the card, as configured; else ``--memory-budget``, with the process capped
to it as a card of that size would be) it runs both kinds of adapter with the same seed and
prints tokens/s over the last 20 iterations (each logged with its own time), the peak memory,
and the largest loss difference over the run (the same updates, so bf16/fp16 noise only).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from compare_v0 import BENCH, REPO, VARLEN, _run  # the same directory
from multi_gpu_w1 import _rows, _tokens_per_sec, _value

CONFIG = BENCH / "w2_llama3_8b_qlora_2k.py"


def _train(name: str, budget: str, adapters_16bit: bool, steps: int, out: Path) -> dict:
    extra, env = [], {}
    if budget != "full":
        extra = ["--memory-budget", budget]
        env = dict(MEM_LIMIT_GB=budget.removesuffix("GB"))
    log = out / f"{name}.log"
    rc = _run([sys.executable, str(REPO / "tests/gpu/xtuner_cli.py"), "train", str(CONFIG),
               "--work-dir", str(out / name), "--seed", "0", *extra, "--cfg-options", *VARLEN,
               f"train_cfg.max_iters={steps}", f"model.adapters_16bit={adapters_16bit}",
               "default_hooks.logger.interval=1", "log_processor.window_size=1"],
              log, f"/tmp/site:{REPO}", REPO, **env)
    print(f"== {name} rc={rc}", flush=True)
    return _rows(log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", default=["full", "14.2GB"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default="/tmp/adapters_16bit")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(BENCH / "make_model_and_data.py"), "/tmp/wl",
                    "llama3_8b"], env=dict(os.environ, PYTHONPATH="/tmp/site"), check=True,
                   stdout=subprocess.DEVNULL)
    for budget in args.budgets:
        runs = {kind: _train(f"w2_{budget}_{kind}", budget, kind == "16bit", args.steps, out)
                for kind in ("16bit", "fp32")}
        for kind, rows in runs.items():
            rate = _tokens_per_sec(rows, last=20)
            memory = max((_value(r, "memory") or 0 for r in rows.values()), default=0) / 1024
            print(f"W2 {budget} adapters {kind}: "
                  f"{'failed' if rate is None else f'{rate:,.0f} tok/s'}, peak {memory:.2f} GB")
        pairs = [(_value(runs["16bit"][k], "loss"), _value(runs["fp32"][k], "loss"))
                 for k in sorted(runs["16bit"]) if k in runs["fp32"]]
        diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
        if diffs:
            print(f"W2 {budget}: {len(diffs)} steps, losses {pairs[0][0]:.4f}->{pairs[-1][0]:.4f}"
                  f" vs {pairs[0][1]:.4f}->{pairs[-1][1]:.4f}; largest difference "
                  f"{max(diffs):.4f}, mean {sum(diffs) / len(diffs):.4f}", flush=True)
    print(f"logs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
