"""The QLoRA demo learns: train it (shortened), convert, merge and chat, with the real commands.

As in ``test_end_to_end.py``, the demo is trained on the first 16 records of its data for 100
epochs: 200 iterations, a minute or two on 2 cores) until it has memorised them. Its chat
evaluation hook generates before training (in eval mode, without grad): on an AVX512-BF16 CPU
that used to switch bitsandbytes' 4-bit layers to an inference layout without a backward, and
the full demo then stalled at a loss of ~2.4 and answered ``#000`` (see
``xtuner/model/quantization.py``; ``tests/model/test_quantization.py`` pins that case on every
CPU).
"""
import json
import os
import re
import subprocess
import sys

from xtuner.demo import COLORIST_DATA_PATH, TINY_LLM_PATH

CONFIG = "demo_tiny_qlora_colorist_e40"
RECORDS = 16


def _xtuner(*args, cwd):
    # One thread: a 1M-parameter model gains nothing from more, and on a busy 2-core runner
    # OpenMP's spinning threads slow it down several times (see tests/model/conftest.py).
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("XTUNER_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "xtuner", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"xtuner {args[0]} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_qlora_demo_learns_and_chats_the_trained_answer(tmp_path):
    with open(COLORIST_DATA_PATH, encoding="utf-8") as f:
        lines = f.readlines()[:RECORDS]
    data = tmp_path / "colors.jsonl"
    data.write_text("".join(lines), encoding="utf-8")
    turns = [json.loads(line)["conversation"][0] for line in lines[:2]]
    work = tmp_path / "work"
    _xtuner("train", CONFIG, "--work-dir", work, "--cfg-options",
            f"train_dataloader.dataset.dataset.data_files.train={data}",
            "train_cfg.max_epochs=100", "default_hooks.checkpoint.interval=1000", cwd=tmp_path)

    log = next(work.glob("*/*.log")).read_text(encoding="utf-8")
    losses = [float(x) for x in re.findall(r"Iter\(train\) \[.*?\].*?\bloss: ([0-9.]+)", log)]
    assert len(losses) >= 20, log[-2000:]  # logged (at least) every 10 of the 200 iterations
    # From ~6 (a random model over a 768-token vocabulary) to memorised.
    assert losses[0] > 4 and max(losses[-3:]) < 0.1, losses

    checkpoint = (work / "last_checkpoint").read_text().strip()
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    # The parity check loads the written adapter onto a fresh 4-bit base.
    assert "Parity check passed" in _xtuner("convert", "pth_to_hf", CONFIG, checkpoint, adapter,
                                            cwd=tmp_path)
    assert "Parity check passed" in _xtuner("convert", "merge", TINY_LLM_PATH, adapter, merged,
                                            cwd=tmp_path)
    for turn in turns:
        reply = _xtuner("chat", merged, "--prompt-template", "qwen_chat", "--temperature", "0",
                        "--max-new-tokens", "12", "--prompt", turn["input"], cwd=tmp_path)
        assert reply.strip() == turn["output"]
