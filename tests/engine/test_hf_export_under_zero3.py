"""The Hugging Face export of a ``save_hf`` model (image-text, encoder + LLM) under DeepSpeed
ZeRO-3, where each rank holds only a shard of every parameter: ``HFCheckpointHook`` writes
what the same model writes unpartitioned in one process. Runs DeepSpeed's CPU accelerator
with gloo in 2 processes (``torchrun``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")

WORKER = Path(__file__).with_name("zero3_export_worker.py")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from xtuner.testing.tiny_image_text import build_tiny_qwen2_vl

    folder = tmp_path_factory.mktemp("zero3_export") / "model"
    build_tiny_qwen2_vl(folder)
    return folder


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_zero3_export_equals_the_unpartitioned_export(model_dir, tmp_path, kind):
    from safetensors.torch import load_file

    sys.path.insert(0, str(WORKER.parent))
    try:
        from zero3_export_worker import build
    finally:
        sys.path.remove(str(WORKER.parent))
    build(str(model_dir), kind == "lora").save_hf(tmp_path / "plain")

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), str(WORKER), str(model_dir),
         str(tmp_path / "zero3"), kind],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    plain = load_file(tmp_path / "plain" / "model.safetensors")
    zero3 = load_file(tmp_path / "zero3" / "model.safetensors")
    assert plain.keys() == zero3.keys()
    assert all(torch.equal(plain[k], zero3[k]) for k in plain)
    assert (tmp_path / "zero3" / "preprocessor_config.json").exists()  # the processor too
