"""GPU (``pytest -m gpu``): ``--resume auto`` continues exactly, under DeepSpeed ZeRO-2 and
with the plain runner on CUDA, with ``randomness.seed=None``, LoRA dropout and gradient
accumulation of 3 (DeepSpeed takes a checkpoint due inside an accumulation window at the
window's end; the plain runner stores the open window's gradients)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

DEMO = "demo_tiny_lora_colorist_e40"
OPTIONS = ["train_cfg.max_epochs=1.2", "randomness.seed=None", "model.lora.lora_dropout=0.1",
           "optim_wrapper.accumulative_counts=3", "default_hooks.checkpoint.interval=4",
           "default_hooks.checkpoint.max_keep_ckpts=5", "default_hooks.logger.interval=1"]
LOSS = re.compile(r"Iter\(train\) \[\s*(\d+)/\d+\].*?\sloss: ([0-9.]+)")


def _demo_options(demo: str) -> list[str]:
    # The QLoRA demo computes in bfloat16: 16-bit adapters, float32 masters in the optimizer.
    return ["model.adapters_16bit=True"] if "qlora" in demo else []


def _train(cwd: Path, work_dir: str, extra: list[str], demo: str = DEMO):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TORCH_CUDA_ARCH_LIST="9.0")
    proc = subprocess.run([sys.executable, "-m", "xtuner", "train", demo, "--work-dir",
                           work_dir, *extra, "--cfg-options", *OPTIONS, *_demo_options(demo)],
                          cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def _losses(work_dir: Path) -> dict[int, float]:
    (log,) = work_dir.glob("*/*.log")
    return {int(m.group(1)): float(m.group(2)) for m in map(LOSS.search,
                                                             log.read_text().splitlines()) if m}


# The QLoRA case keeps 16-bit adapters with float32 master weights in the optimizer's state
# (xtuner.engine.optim.MasterWeights).
@pytest.mark.parametrize("deepspeed,demo", [([], DEMO), (["--deepspeed", "deepspeed_zero2"], DEMO),
                                            ([], "demo_tiny_qlora_colorist_e40")],
                         ids=["plain", "zero2", "qlora_16bit_adapters"])
def test_resume_repeats_the_uninterrupted_run(tmp_path, deepspeed, demo):
    _train(tmp_path, "full", deepspeed, demo)
    checkpoints = sorted((tmp_path / "full").glob("iter_*.pth"),
                         key=lambda p: int(p.stem.split("_")[1]))
    resume_from = checkpoints[-2]  # a run killed after its next-to-last checkpoint
    if deepspeed:  # taken at the end of an accumulation window of 3
        assert all(int(p.stem.split("_")[1]) % 3 == 0 or p == checkpoints[-1]
                   for p in checkpoints), checkpoints
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    target = resumed / resume_from.name
    (shutil.copytree if resume_from.is_dir() else shutil.copy)(resume_from, target)
    (resumed / "last_checkpoint").write_text(str(target))
    _train(tmp_path, "resumed", [*deepspeed, "--resume", "auto"], demo)
    expected, got = _losses(tmp_path / "full"), _losses(resumed)
    start = int(resume_from.stem.split("_")[1])
    assert sorted(got) == [i for i in sorted(expected) if i > start]
    for i in got:
        assert got[i] == pytest.approx(expected[i], abs=2e-3), (i, got, expected)
