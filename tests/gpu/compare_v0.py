"""XTuner 0.2.0 beside xtuner on v0's own benchmark configs, in one sitting: issue #19's table.

    python3 tests/gpu/compare_v0.py [w1] [w2] [--steps 30]

From the repo root of a GPU machine with the carried wheels (``.whl`` for xtuner, ``.whlref``
for XTuner 0.2.0: ``../shared/gpu/prepare-wheels.sh [--reference]``; installed into
/tmp/site and /tmp/ref by ``tests/gpu/common.sh`` when missing). For each workload
(``tests/gpu/v0_reference``, random weights) it runs, each through its project's own
``xtuner train``:

1. XTuner 0.2.0 on the v0 config file;
2. xtuner on the same file, unchanged (``use_varlen_attn = False``);
3. xtuner with varlen attention (samples in a packed row do not see each other);
4. xtuner with varlen attention and ``--memory-budget`` set to XTuner 0.2.0's peak of step 1.

Throughput is real tokens per second over the logged window (the ``time:`` window average):
xtuner logs it (``tokens_per_sec``, non-padding tokens); XTuner 0.2.0's rows are packed full,
so its rate is ``max_length / time``. Memory is the largest logged ``memory:`` (peak
allocated). Prints one markdown row per workload and the logs' folder.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "tests" / "gpu" / "v0_reference"
WORKLOADS = {  # name: (model shape, v0 config, max_length)
    "w1": ("qwen2_1_5b", "w1_qwen2_1_5b_full_8k.py", 8192),
    "w2": ("llama3_8b", "w2_llama3_8b_qlora_2k.py", 2048),
}
VARLEN = ["model.use_varlen_attn=True", "train_dataloader.dataset.use_varlen_attn=True",
          "train_dataloader.collate_fn.use_varlen_attn=True"]
ITER = re.compile(r"Iter\(train\) \[ *(\d+)/\d+\](.*)")


def _run(cmd: list[str], log: Path, pythonpath: str, cwd: Path, **env_vars: str) -> int:
    """Run ``cmd`` with its output in ``log`` (and ``env_vars`` set); its exit status."""
    env = dict(os.environ, PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1",
               TORCH_CUDA_ARCH_LIST="9.0", HF_HUB_OFFLINE="1", **env_vars)
    with log.open("w") as out:
        try:
            return subprocess.run(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=600).returncode
        except subprocess.TimeoutExpired:
            return 124


def _figures(log: Path, tokens_per_row: int | None) -> tuple[float, float] | None:
    """(tokens/s over the last logged window, peak GB) from a log, or None."""
    rows = [m.group(2) for m in map(ITER.search, log.read_text(errors="replace").splitlines())
            if m]
    if not rows:
        return None
    last = rows[-1]
    memory = max(float(x) for r in rows for x in re.findall(r"memory: (\d+)", r)) / 1024
    if tokens_per_row is None:
        rate = float(re.search(r"tokens_per_sec: ([0-9.]+)", last).group(1))
    else:
        rate = tokens_per_row / float(re.search(r"\btime: ([0-9.]+)", last).group(1))
    return rate, memory


def _cell(figures, reference=None) -> str:
    if figures is None:
        return "failed"
    rate, memory = figures
    ratio = f" ({rate / reference[0]:.2f}x)" if reference else ""
    return f"{rate / 1000:.1f}k{ratio}, {memory:.1f} GB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=30, help="iterations of each run")
    parser.add_argument("--out", default="/tmp/compare_v0")
    args = parser.parse_args()
    out, wl = Path(args.out), Path("/tmp/wl")
    out.mkdir(parents=True, exist_ok=True)
    wl.mkdir(parents=True, exist_ok=True)
    # the wheels, installed as the other GPU scripts install them
    subprocess.run(["bash", "-c", "source tests/gpu/common.sh && install_reference"],
                   cwd=REPO, check=True)
    ours_path = f"/tmp/site:{REPO}"
    steps = [f"train_cfg.max_iters={args.steps}"]
    print("| workload | XTuner 0.2.0 | xtuner, v0 config unchanged | xtuner, varlen "
          "| xtuner, varlen, at v0's memory |")
    print("|---|---|---|---|---|")
    for name in args.workloads:
        shape, config, max_length = WORKLOADS[name]
        _run([sys.executable, str(BENCH / "make_model_and_data.py"), str(wl), shape],
             out / f"{name}_make.log", "/tmp/ref", REPO)
        cfg = str(BENCH / config)
        v0_log = out / f"{name}_v0.log"
        _run([sys.executable, "/tmp/ref/xtuner/tools/train.py", cfg, "--work-dir",
              str(wl / f"{name}_v0"), "--cfg-options", *steps], v0_log, "/tmp/ref", wl)
        v0 = _figures(v0_log, max_length)
        cells = [_cell(v0)]
        variants = [("unchanged", []), ("varlen", VARLEN)]
        if v0 is not None:
            variants.append(("varlen_v0_memory", VARLEN, f"{v0[1]:.1f}GB"))
        for variant, options, *budget in variants:
            log = out / f"{name}_{variant}.log"
            extra = ["--memory-budget", budget[0]] if budget else []
            _run([sys.executable, "-m", "xtuner", "train", cfg, "--work-dir",
                  str(wl / f"{name}_{variant}"), *extra, "--cfg-options", *steps, *options],
                 log, ours_path, REPO)
            cells.append(_cell(_figures(log, None), v0))
        if v0 is None:
            cells.append("needs the v0 run")
        print(f"| {name.upper()} | " + " | ".join(cells) + " |", flush=True)
    print(f"logs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
