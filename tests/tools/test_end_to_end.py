"""The whole user path on the CPU: train the demo (full and LoRA), convert, merge, chat.

The demo is trained on its first 16 records (so it takes seconds, not minutes) until it has
memorised them; the chat must then answer a question from the data with its trained answer.
"""
import json
import os
import subprocess
import sys

import pytest

from xtuner.demo import COLORIST_DATA_PATH, TINY_LLM_PATH

RECORDS = 16


def _xtuner(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "xtuner", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"xtuner {args[0]} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with open(COLORIST_DATA_PATH, encoding="utf-8") as f:
        lines = f.readlines()[:RECORDS]
    path = tmp / "colors.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    turn = json.loads(lines[0])["conversation"][0]
    return tmp, path, turn["input"], turn["output"]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_train_convert_chat_answers_from_the_data(small_data, method):
    tmp, data, question, answer = small_data
    config = f"demo_tiny_{method}_colorist_e40"
    work = tmp / f"work_{method}"
    _xtuner("train", config, "--work-dir", work, "--cfg-options",
            f"train_dataloader.dataset.dataset.data_files.train={data}",
            "train_cfg.max_epochs=100", "default_hooks.checkpoint.interval=1000", cwd=tmp)
    checkpoint = (work / "last_checkpoint").read_text().strip()
    hf = tmp / f"hf_{method}"
    out = _xtuner("convert", "pth_to_hf", config, checkpoint, hf, cwd=tmp)
    assert "Parity check passed" in out
    model = hf
    if method == "lora":
        model = tmp / "merged"
        out = _xtuner("convert", "merge", TINY_LLM_PATH, hf, model, cwd=tmp)
        assert "Parity check passed" in out
    reply = _xtuner("chat", model, "--prompt-template", "qwen_chat", "--temperature", "0",
                    "--max-new-tokens", "12", "--prompt", question, cwd=tmp)
    assert reply.strip() == answer
