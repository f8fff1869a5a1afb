"""Fixtures shared by the tool tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

XTUNER_BIN = Path(sys.executable).parent / "xtuner"
LLAVA_DEMO = "demo_tiny_llava_shapes_e12"


@pytest.fixture(scope="session")
def trained_llava_demo(tmp_path_factory) -> Path:
    """The checkpoint of ``xtuner train demo_tiny_llava_shapes_e12`` shortened to 6 of its 12
    epochs, trained once for every test that needs it (about 45 s on 2 cores)."""
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    cwd = tmp_path_factory.mktemp("llava_demo")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("XTUNER_DEBUG", None)
    proc = subprocess.run(
        [str(XTUNER_BIN), "train", LLAVA_DEMO, "--work-dir", "wd",
         "--cfg-options", "train_cfg.max_epochs=6", "default_hooks.checkpoint.interval=10000"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (checkpoint,) = sorted((cwd / "wd").glob("iter_*.pth"))
    return checkpoint
