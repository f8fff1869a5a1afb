"""The offline DPO demo learns: ``xtuner train demo_tiny_dpo_colorist_e6`` (shortened) raises
the logged reward accuracy and brings the loss well below log 2; its checkpoints hold the
policy only, and ``xtuner convert pth_to_hf`` exports the trained policy, not the reference."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DEMO = "demo_tiny_dpo_colorist_e6"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    cwd = tmp_path_factory.mktemp("dpo_demo")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("XTUNER_DEBUG", None)
    proc = subprocess.run(
        [str(XTUNER_BIN), "train", DEMO, "--work-dir", "wd", "--cfg-options", "max_epochs=3"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (scalars,) = (cwd / "wd").glob("*/vis_data/scalars.json")
    logs = [json.loads(line) for line in scalars.read_text().splitlines()]
    return cwd, env, logs


def test_reward_accuracy_rises_and_the_loss_falls(run):
    _, _, logs = run
    assert len(logs) >= 10
    acc = [row["reward_acc"] for row in logs]
    loss = [row["loss"] for row in logs]
    # chance is 0.5 (at step 0 every reward is exactly 0 and the loss is log 2)
    assert abs(loss[0] - math.log(2)) < 0.05, loss[:3]
    assert sum(acc[-3:]) / 3 >= 0.75, acc
    assert sum(acc[-3:]) / 3 > sum(acc[:3]) / 3 + 0.2, acc
    assert loss[-1] < math.log(2) - 0.1, loss
    for key in ("chosen_rewards", "rejected_rewards", "reward_margin"):
        assert key in logs[-1]
    assert logs[-1]["reward_margin"] > 0


def test_checkpoints_and_export_hold_the_policy_only(run):
    from safetensors.torch import load_file

    from xtuner.demo import TINY_LLM_PATH

    cwd, env, _ = run
    checkpoint = max((cwd / "wd").glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(k.startswith("llm.") for k in state), sorted(state)[:5]
    proc = subprocess.run(
        [str(XTUNER_BIN), "convert", "pth_to_hf", DEMO, str(checkpoint), "hf", "--fp32"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    exported = load_file(cwd / "hf" / "model.safetensors")
    initial = load_file(Path(TINY_LLM_PATH) / "model.safetensors")  # the reference
    assert set(exported) == set(initial)
    for name, value in exported.items():
        torch.testing.assert_close(value, state[f"llm.{name}"].float(), rtol=0, atol=0)
    assert any(not torch.equal(exported[n], initial[n]) for n in exported)
