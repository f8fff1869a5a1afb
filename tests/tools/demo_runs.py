"""Running the offline demos through the ``xtuner`` console script, for the tool tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

XTUNER_BIN = Path(sys.executable).parent / "xtuner"


def train_demo(cwd: Path, demo: str, *cfg_options: str) -> dict:
    """``xtuner train DEMO --work-dir wd [--cfg-options ...]`` in ``cwd``, offline and on one
    thread; fails the test on a non-zero exit. Returns the environment it ran with."""
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("XTUNER_DEBUG", None)
    options = ["--cfg-options", *cfg_options] if cfg_options else []
    proc = subprocess.run([str(XTUNER_BIN), "train", demo, "--work-dir", "wd", *options],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return env
