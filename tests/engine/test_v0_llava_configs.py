"""XTuner 0.2.0's own LLaVA configs (pretrain, then QLoRA fine-tune from its checkpoint) run
unchanged but for their paths: the files are read from v0's wheel, pointed at the tiny demo
Llama, the tiny CLIP tower and the shapes pictures, and trained with `xtuner train`."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG_DIR = "configs/llava/internlm2_chat_1_8b_clip_vit_large_p14_336"
PRETRAIN = f"{CONFIG_DIR}/pretrain/llava_internlm2_chat_1_8b_clip_vit_large_p14_336_e1_gpu8_pretrain.py"  # noqa: E501
FINETUNE = f"{CONFIG_DIR}/finetune/llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_e1_gpu8_finetune.py"  # noqa: E501


def _localised(text: str, image: Path, pretrained: Path | None) -> str:
    """v0's config with its hub ids, data paths and evaluation image made local."""
    from xtuner.demo import SHAPES_DATA_PATH, SHAPES_DIR, TINY_CLIP_PATH, TINY_LLM_PATH

    replacements = {
        r'llm_name_or_path = "[^"]+"': f"llm_name_or_path = {TINY_LLM_PATH!r}",
        r'visual_encoder_name_or_path = "[^"]+"':
            f"visual_encoder_name_or_path = {TINY_CLIP_PATH!r}",
        r'data_path = [^\n]+': f"data_path = {SHAPES_DATA_PATH!r}",
        r'image_folder = [^\n]+': f"image_folder = {SHAPES_DIR!r}",
        r'evaluation_images = "[^"]+"': f"evaluation_images = {str(image)!r}",
        r'dataloader_num_workers = \d+': "dataloader_num_workers = 0",
    }
    if pretrained is not None:
        replacements[r'pretrained_pth = "[^"]+"'] = f"pretrained_pth = {str(pretrained)!r}"
    for pattern, value in replacements.items():
        text, n = re.subn(pattern, lambda _m, v=value: v, text)
        assert n == 1, pattern
    return text


def _train(config: Path, work_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("XTUNER_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "xtuner", "train", str(config), "--work-dir",
                           str(work_dir)], cwd=work_dir.parent, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    from PIL import Image
    from v0_oracle import load_v0

    load_v0()  # skips without the wheel
    import v0_oracle

    tmp = tmp_path_factory.mktemp("v0_llava")
    image = tmp / "view.png"
    Image.new("RGB", (40, 30), (30, 70, 220)).save(image)
    source = v0_oracle._unpacked()
    pretrain = tmp / "pretrain.py"
    pretrain.write_text(_localised((source / PRETRAIN).read_text(encoding="utf-8"), image, None))
    first = _train(pretrain, tmp / "pretrain")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    (checkpoint,) = sorted((tmp / "pretrain").glob("iter_*.pth"))
    finetune = tmp / "finetune.py"
    finetune.write_text(_localised((source / FINETUNE).read_text(encoding="utf-8"), image,
                                   checkpoint))
    second = _train(finetune, tmp / "finetune")
    return first, checkpoint, second, tmp / "finetune"


def test_pretrain_stage_trains_the_projector_only(stages):
    import torch

    _, checkpoint, _, _ = stages
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert state and all(k.startswith("projector.") for k in state)


def test_finetune_stage_starts_from_the_pretrained_projector_and_trains(stages):
    first, _, second, work = stages
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    log = second.stdout + second.stderr
    assert "Loaded 4 tensors from" in log  # the pretrained projector (v0's pretrained_pth)
    (run_log,) = work.glob("*/*.log")
    # v0's EvaluateChatHook asked about the evaluation image before training.
    assert "Sample output (0)" in run_log.read_text() and "<image>" in run_log.read_text()
    (checkpoint,) = sorted(work.glob("iter_*.pth"))
    import torch

    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert any("lora_" in k and k.startswith("llm.") for k in state)  # QLoRA adapters
    assert any("lora_" in k and k.startswith("visual_encoder.") for k in state)
    assert any(k.startswith("projector.") for k in state)
