"""W2 through ``xtuner train`` with model options against each other, on one GPU, in one
sitting (issues #19, #20).

    python3 tests/gpu/w2_options.py [--variants adapters_16bit=True adapters_16bit=False]
                                    [--budgets full 14.2GB 8GB] [--steps 40] [--no-varlen]
                                    [--bf16] [--repeat 1]

From the repo root of a GPU machine with the carried wheels (``.whl``; see
``tests/gpu/common.sh``). W2 is XTuner v0's QLoRA config
(``tests/gpu/v0_reference/w2_llama3_8b_qlora_2k.py``: a Llama-3-8B shape with random weights,
packed 2048-token rows, fp16 autocast, LoRA dropout 0.1), with varlen attention unless
``--no-varlen`` (the v0 config unchanged); ``--bf16`` loads, computes and autocasts in
bfloat16 instead of the config's float16 (as the catalog's QLoRA configs do). Each variant is a
``model.KEY=VALUE`` setting (the first is the reference). For each budget (``full``: the
card, as configured; else ``--memory-budget``, with the process capped to it as a card of that
size would be) it runs every variant with the same seed and prints tokens/s over the last 20
iterations (each logged with its own time), the median step of the run after 5 warm-up steps,
the peak memory, and each variant's largest loss difference from the first. ``--repeat N`` runs
the variants N times, alternating their order: the host's speed drifts over minutes, so compare
the medians of several alternating pairs, not one pair.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from compare_v0 import BENCH, REPO, VARLEN, _run  # the same directory
from multi_gpu_w1 import _rows, _tokens_per_sec, _value

CONFIG = BENCH / "w2_llama3_8b_qlora_2k.py"


BF16 = ["model.llm.torch_dtype=bfloat16",
        "model.llm.quantization_config.bnb_4bit_compute_dtype=bfloat16",
        "optim_wrapper.dtype=bfloat16"]


def _train(name: str, budget: str, option: str, steps: int, varlen: bool, bf16: bool,
           out: Path) -> dict:
    extra, env = [], {}
    if budget != "full":
        extra = ["--memory-budget", budget]
        env = dict(MEM_LIMIT_GB=budget.removesuffix("GB"))
    log = out / f"{name}.log"
    rc = _run([sys.executable, str(REPO / "tests/gpu/xtuner_cli.py"), "train", str(CONFIG),
               "--work-dir", str(out / name), "--seed", "0", *extra, "--cfg-options",
               *(VARLEN if varlen else []), *(BF16 if bf16 else []),
               f"train_cfg.max_iters={steps}", f"model.{option}",
               "default_hooks.logger.interval=1", "log_processor.window_size=1"],
              log, f"/tmp/site:{REPO}", REPO, **env)
    print(f"== {name} rc={rc}", flush=True)
    return _rows(log)


def _median_step(rows: dict[int, str], skip: int = 5) -> float | None:
    """The median logged iteration time after the first ``skip`` (warm-up) iterations."""
    times = [_value(rows[k], "time") for k in sorted(rows) if k > skip]
    times = [t for t in times if t is not None]
    return statistics.median(times) if times else None


def _report(title: str, runs: dict[str, dict[int, str]], reference: str) -> None:
    for option, rows in runs.items():
        rate = _tokens_per_sec(rows, last=20)
        median = _median_step(rows)
        memory = max((_value(r, "memory") or 0 for r in rows.values()), default=0) / 1024
        line = (f"{title} {option}: "
                f"{'failed' if rate is None else f'{rate:,.0f} tok/s'}, peak {memory:.2f} GB"
                + ("" if median is None else f", median step {median:.3f} s"))
        pairs = [(_value(runs[reference][k], "loss"), _value(rows[k], "loss"))
                 for k in sorted(rows) if k in runs[reference]]
        diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
        if diffs and option != reference:
            line += (f"; {len(diffs)} steps, losses {pairs[-1][1]:.4f} vs {pairs[-1][0]:.4f}"
                     f", largest difference {max(diffs):.4f}")
        print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+",
                        default=["adapters_16bit=True", "adapters_16bit=False"])
    parser.add_argument("--budgets", nargs="+", default=["full", "14.2GB"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--no-varlen", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the variants this many times, alternating their order")
    parser.add_argument("--out", default="/tmp/w2_options")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(BENCH / "make_model_and_data.py"), "/tmp/wl",
                    "llama3_8b"], env=dict(os.environ, PYTHONPATH="/tmp/site"), check=True,
                   stdout=subprocess.DEVNULL)
    for budget in args.budgets:
        for repeat in range(args.repeat):
            # Alternate the order: the host's speed drifts over minutes (README, Performance).
            order = args.variants if repeat % 2 == 0 else args.variants[::-1]
            runs = {option: _train(f"w2_{budget}_{option.replace('=', '_')}_r{repeat}", budget,
                                   option, args.steps, not args.no_varlen, args.bf16, out)
                    for option in order}
            _report(f"W2 {budget} (run {repeat + 1}/{args.repeat})", runs, args.variants[0])
    print(f"logs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
