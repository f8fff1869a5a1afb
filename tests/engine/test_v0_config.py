"""A config written for XTuner v0 runs unchanged once its paths point at local files.

``tests/data/v0_internlm2_chat_1_8b_qlora_emo_e3.py`` is the full v0 QLoRA config from the
project's seed documents (InternLM2 chat, fp16 AMP, 4-bit NF4, EvaluateChatHook, ThroughputHook,
epoch-based checkpoints, TensorBoard). Only what must change for an offline CPU test changes:
the model and data paths, the LoRA target names (InternLM2's `wqkv`... do not exist in the tiny
Llama stand-in) and the number of epochs.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xtuner.testing import tiny_llm_and_tokenizer

V0_CONFIG = Path(__file__).parents[1] / "data" / "v0_internlm2_chat_1_8b_qlora_emo_e3.py"
LLAMA_TARGETS = "['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']"


@pytest.fixture(scope="module")
def v0_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v0")
    texts = [f"问题 {i}: 我最近对第 {i} 件事提不起兴趣。 Answer {i}: talk to someone you trust."
             for i in range(20)]
    model_dir, _ = tiny_llm_and_tokenizer(tmp, texts=texts)
    records = [{"conversation": [{"system": "现在你是一个心理专家",
                                  "input": f"医生，我最近对第 {i} 件事提不起兴趣。",
                                  "output": f"Answer {i}: talk to someone you trust."}]}
               for i in range(1200)]
    data = tmp / "emo.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    text = V0_CONFIG.read_text(encoding="utf-8")
    for old, new in [("'./models/internlm2-chat-1_8b'", repr(model_dir)),
                     ("'./data/emo_1234_xtuner.json'", repr(str(data))),
                     ("['wqkv', 'wo', 'w1', 'w2', 'w3']", LLAMA_TARGETS),
                     ("max_epochs = 3", "max_epochs = 2")]:
        assert old in text
        text = text.replace(old, new)
    config = tmp / "internlm2_chat_1_8b_qlora_emo_e3.py"
    config.write_text(text, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    # The config's lr (2e-5) suits a pretrained 1.8B model; the random stand-in needs more
    # to show learning within a few steps. It is given on the command line, not in the file.
    proc = subprocess.run([sys.executable, "-m", "xtuner", "train", str(config),
                           "--work-dir", str(tmp / "work"),
                           "--cfg-options", "optim_wrapper.optimizer.lr=0.01"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc, tmp / "work"


def test_v0_config_trains_and_saves_per_epoch(v0_run):
    proc, work = v0_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "epoch_1.pth").is_file() and (work / "epoch_2.pth").is_file()
    assert (work / "last_checkpoint").read_text().strip().endswith("epoch_2.pth")
    # The CPU fallbacks were announced once each.
    log = proc.stdout + proc.stderr
    assert log.count("AmpOptimWrapper replaced by OptimWrapper") == 1
    assert "using float32 instead of dtype=torch.float16" in log


def test_v0_config_logs_falling_loss_and_tensorboard(v0_run):
    proc, work = v0_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = next(work.glob("*/vis_data/scalars.json"))
    losses = [json.loads(line)["loss"] for line in scalars.read_text().splitlines()
              if "loss" in line]
    assert len(losses) >= 4 and sum(losses[-2:]) < sum(losses[:2]) - 0.2
    assert list(work.glob("*/vis_data/events.out.tfevents.*")), "TensorBoard backend wrote nothing"
