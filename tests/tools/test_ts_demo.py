"""The offline time-series demo learns: ``xtuner train demo_tiny_ts_signals_e16`` (shortened),
then the trained model, saved with ``save_hf`` and loaded back, says what signals it has
never seen are; a broken media path in the data stops ``xtuner train`` with one line naming
``file:line``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

DEMO = "demo_tiny_ts_signals_e16"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("XTUNER_DEBUG", None)
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    cwd = tmp_path_factory.mktemp("ts_demo")
    proc = subprocess.run(
        [str(XTUNER_BIN), "train", DEMO, "--work-dir", "wd",
         "--cfg-options", "max_epochs=8", "save_steps=10000"],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (checkpoint,) = sorted((cwd / "wd").glob("iter_*.pth"))
    return checkpoint


def test_the_demo_names_unseen_signals(trained, tmp_path):
    from mmengine.config import Config

    from xtuner.demo.build_ts_demo import KINDS, make_signal, record, write_signal
    from xtuner.model.encoder_llm import EncoderLLM
    from xtuner.model.utils import build_from_cfg
    from xtuner.registry import BUILDER
    from xtuner.utils.paths import resolve_config

    cfg = Config.fromfile(resolve_config(DEMO))
    model = BUILDER.build(cfg.model)
    model.load_state_dict(torch.load(trained, weights_only=True)["state_dict"])
    # What a user ships and chats with: the save_hf folder, loaded back.
    model = EncoderLLM.from_hf(model.save_hf(tmp_path / "hf")).eval()
    fn = build_from_cfg(dict(cfg.train_dataset.tokenize_fn, media_root=str(tmp_path)))
    rng = np.random.default_rng(2024)  # signals the demo data does not hold
    right = total = 0
    for i in range(4):
        for kind, (answer, _, _) in KINDS.items():
            name = f"{kind}_{i}{('.wav', '.npy')[i % 2]}"
            write_signal(tmp_path / name, make_signal(kind, rng))
            prompt = fn.prompt(record(name, "What is this signal?<TS_CONTEXT>"))
            out = model.generate(torch.tensor([prompt["input_ids"]]),
                                 [fn.load(r) for r in prompt["media"]],
                                 max_new_tokens=16, do_sample=False)
            said = fn.tokenizer.decode(out[0], skip_special_tokens=True).strip()
            right += said.startswith(answer)
            total += 1
    # 5 kinds, chance is 1 in 5; half the schedule gets most of them right (the full demo
    # gets 40 of 40 such signals, 6 of 16 epochs 32 of 40).
    assert right >= 0.7 * total, (right, total)


def test_a_missing_signal_file_is_one_line_naming_the_record(tmp_path):
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    from xtuner.demo.build_ts_demo import record

    np.save(tmp_path / "ok.npy", np.zeros(200, dtype=np.float32))
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(record("ok.npy", "?<TS_CONTEXT>", "Flat.")) + "\n"
                    + json.dumps(record("lost.wav", "?<TS_CONTEXT>", "Gone.")) + "\n")
    proc = subprocess.run(
        [str(XTUNER_BIN), "train", DEMO, "--work-dir", "wd", "--cfg-options",
         f"data_path={data}", f"media_root={tmp_path}"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "lost.wav" in line]
    assert len(lines) == 1 and f"{data}:2: " in lines[0] and "no such file" in lines[0], \
        proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
