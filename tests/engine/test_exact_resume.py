"""``xtuner train --resume auto`` continues exactly the run it resumes.

Real CLI runs of the tiny LoRA demo with ``randomness.seed=None`` (the catalog's setting),
LoRA dropout (so the random streams matter), gradient accumulation of 3 micro-batches and
checkpoints every 4 iterations, so the checkpoint resumed from falls inside an accumulation
window. The oracle is the uninterrupted run: from the checkpoint on, the resumed run must log
the same losses and end with the same weights.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ports import free_port

DEMO = "demo_tiny_lora_colorist_e40"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"
MAX_ITERS = 12
CFG_OPTIONS = [
    "train_cfg.max_epochs=1.2",  # 10 iterations an epoch: the resumed part crosses epochs
    "randomness.seed=None",
    "model.lora.lora_dropout=0.1",
    "optim_wrapper.accumulative_counts=3",
    "default_hooks.checkpoint.interval=4",
    "default_hooks.logger.interval=1",
]
LOG_LINE = re.compile(r"Iter\(train\) \[\s*(\d+)/(\d+)\].*?\sloss: ([0-9.]+)")


def _train(cwd: Path, work_dir: str, *extra: str, nproc: int = 1) -> subprocess.CompletedProcess:
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    env = {k: v for k, v in os.environ.items()
           if k not in ("XTUNER_DEBUG", "NPROC_PER_NODE", "NNODES")}
    options = list(CFG_OPTIONS)
    if nproc > 1:  # several CPU processes (gloo), each with its share of the rows
        env.update(NPROC_PER_NODE=str(nproc), PORT=str(free_port()))
        options[0] = f"train_cfg.max_epochs={1.2 * nproc}"
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [str(XTUNER_BIN), "train", DEMO, "--work-dir", work_dir, *extra,
         "--cfg-options", *options],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


def _losses(work_dir: Path) -> dict[int, str]:
    (run,) = [p for p in work_dir.iterdir() if p.is_dir()]
    return {int(m.group(1)): m.group(3)
            for m in map(LOG_LINE.search, (run / f"{run.name}.log").read_text().splitlines())
            if m}


def _full_and_resumed(cwd: Path, nproc: int = 1) -> tuple[Path, Path]:
    _train(cwd, "full", nproc=nproc)
    resumed = cwd / "resumed"
    resumed.mkdir()
    # A run killed after its iteration-8 checkpoint, 2 micro-batches into a window of 3.
    shutil.copy(cwd / "full" / "iter_8.pth", resumed / "iter_8.pth")
    (resumed / "last_checkpoint").write_text(str(resumed / "iter_8.pth"))
    _train(cwd, "resumed", "--resume", "auto", nproc=nproc)
    return cwd / "full", resumed


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return _full_and_resumed(tmp_path_factory.mktemp("exact_resume"))


def test_the_checkpoint_holds_what_an_exact_resume_needs(runs):
    full, _ = runs
    ckpt = torch.load(full / "iter_8.pth", weights_only=True, map_location="cpu")
    state = ckpt["xtuner_resume"]
    assert len(state["rng"]) == 1  # one rank
    # Iteration 8 is the second micro-batch of the window 7-9: its gradients are open.
    assert state["grads"] and set(state["grads"]) <= set(ckpt["state_dict"])
    assert isinstance(ckpt["meta"]["seed"], int)  # seed=None drew one; it is recorded


def test_resumed_run_repeats_the_uninterrupted_losses_and_weights(runs):
    full, resumed = runs
    expected, got = _losses(full), _losses(resumed)
    assert sorted(got) == list(range(9, MAX_ITERS + 1))
    assert got == {i: expected[i] for i in got}
    a = torch.load(full / f"iter_{MAX_ITERS}.pth", weights_only=True)["state_dict"]
    b = torch.load(resumed / f"iter_{MAX_ITERS}.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def test_two_cpu_processes_resume_exactly(tmp_path):
    """``NPROC_PER_NODE=2`` (gloo): every rank's random streams and the averaged gradients
    of the open window are saved (collectively, although only rank 0 writes the file)."""
    full, resumed = _full_and_resumed(tmp_path, nproc=2)
    ckpt = torch.load(full / "iter_8.pth", weights_only=True, map_location="cpu")
    assert len(ckpt["xtuner_resume"]["rng"]) == 2
    expected, got = _losses(full), _losses(resumed)
    assert sorted(got) and got == {i: expected[i] for i in got}
