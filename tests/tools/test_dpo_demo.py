"""The offline DPO demo learns: ``xtuner train demo_tiny_dpo_colorist_e6`` (shortened) raises
the logged reward accuracy and brings the loss well below log 2; its checkpoints hold the
policy only, and ``xtuner convert pth_to_hf`` exports the trained policy, not the reference."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tools.demo_runs import train_demo

DEMO = "demo_tiny_dpo_colorist_e6"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("dpo_demo")
    env = train_demo(cwd, DEMO, "max_epochs=3")
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


# -- XTuner 0.2.0's own preference configs, unchanged but for local paths -------------------------
V0_CONFIGS = {
    "dpo": "dpo/internlm/internlm2_chat_1_8b_dpo_full_varlenattn_jsonl_dataset.py",
    "orpo": "orpo/internlm/internlm2_chat_1_8b_orpo_full_varlenattn_jsonl_dataset.py",
    "reward": "reward_model/internlm/internlm2_chat_1_8b_reward_full_varlenattn_jsonl_dataset.py",
}


def _local_v0_config(kind: str, folder: Path) -> Path:
    """v0's config from its wheel with the model path, the data files and the reward token
    pointed at the tiny demo model and a few demo pairs; nothing else is changed."""
    import re

    from v0_oracle import load_v0

    from xtuner.demo import TINY_LLM_PATH
    from xtuner.demo.build_preference_demo import COLORIST_PREFERENCE_PATH

    load_v0()  # skips without the wheel
    import v0_oracle

    text = (v0_oracle._unpacked() / "configs" / V0_CONFIGS[kind]).read_text(encoding="utf-8")
    data = folder / "pairs.jsonl"
    data.write_text("".join(Path(COLORIST_PREFERENCE_PATH).read_text(
        encoding="utf-8").splitlines(keepends=True)[:8]), encoding="utf-8")
    text = text.replace('"internlm/internlm2-chat-1_8b-sft"', repr(TINY_LLM_PATH))
    text, n = re.subn(r"data_files=\[[^\]]*\]", f"data_files=[{str(data)!r}]", text)
    assert n == 1
    text = text.replace("reward_token_id = 92527", "reward_token_id = 5")
    path = folder / Path(V0_CONFIGS[kind]).name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy runner they cost a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", sorted(V0_CONFIGS))
def test_v0_preference_configs_train(kind, tmp_path, monkeypatch, one_thread):
    from xtuner.entry_point import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _local_v0_config(kind, tmp_path)
    work = tmp_path / "w"
    assert main(["train", str(config), "--work-dir", str(work)]) == 0
    (scalars,) = work.glob("*/vis_data/scalars.json")
    last = json.loads(scalars.read_text().splitlines()[-1])
    metric = {"dpo": "reward_acc", "orpo": "log_odds_ratio", "reward": "acc"}[kind]
    assert metric in last and math.isfinite(last["loss"])
    checkpoint = max(work.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert not any(k.startswith("ref_llm") for k in state)
    if kind == "reward":
        # exported as a sequence-classification model carrying the config's reward token
        from mmengine.config import Config
        from transformers import AutoModelForSequenceClassification

        from xtuner.model.export import build_model

        cfg = Config.fromfile(str(config))
        model = build_model(cfg)
        model.load_state_dict(state)
        model.to_hf(cfg, tmp_path / "hf", fp32=True)
        hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf")
        assert hf.config.reward_token_id == 5 and hf.config.num_labels == 1
