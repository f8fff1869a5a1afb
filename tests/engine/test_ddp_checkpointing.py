"""Two CPU processes (gloo DDP) with ``find_unused_parameters = True`` and every layer
checkpointed: DDP cannot follow torch's reentrant checkpoint (the default kind), so the run
switches to the non-reentrant one, says so, and trains. Without the switch DDP fails with
'Expected to mark a variable ready only once'."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_port

DEMO = "demo_tiny_lora_colorist_e40"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"


def test_ddp_finding_unused_parameters_trains_with_checkpointing(tmp_path):
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    env = {k: v for k, v in os.environ.items() if k not in ("XTUNER_DEBUG", "NNODES")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    subprocess.run([str(XTUNER_BIN), "copy-cfg", DEMO, str(tmp_path)], env=env, check=True,
                   capture_output=True)
    (config,) = tmp_path.glob("*.py")
    config.write_text(config.read_text() + "\nfind_unused_parameters = True\n")
    env.update(NPROC_PER_NODE="2", PORT=str(free_port()))
    proc = subprocess.run(
        [str(XTUNER_BIN), "train", str(config), "--work-dir", str(tmp_path / "run"),
         "--cfg-options", "train_cfg.max_epochs=0.4", "model.use_activation_checkpointing=True",
         "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=1000"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "recomputes with torch's non-reentrant checkpoint" in out
    losses = [float(x) for x in re.findall(r"Iter\(train\) \[\s*\d+/2\].*?\sloss: ([0-9.]+)", out)]
    assert len(losses) == 2, out[-3000:]
