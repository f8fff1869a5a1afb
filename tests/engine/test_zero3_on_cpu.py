"""Models under DeepSpeed ZeRO-3, where each rank holds only a shard of every parameter, on
DeepSpeed's CPU accelerator with gloo in 2 processes (``torchrun``; ``zero3_worker.py``):

* the Hugging Face export of a ``save_hf`` model (image-text, encoder + LLM) by
  ``HFCheckpointHook`` is what the same model writes unpartitioned in one process;
* LLaVA and encoder + LLM models train under ZeRO-3 with the losses of one process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")

WORKER = Path(__file__).with_name("zero3_worker.py")


def _torchrun(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--standalone", str(WORKER), *args],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def _worker_module():
    sys.path.insert(0, str(WORKER.parent))
    try:
        import zero3_worker
    finally:
        sys.path.remove(str(WORKER.parent))
    return zero3_worker


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> tuple[Path, Path]:
    """(the tiny image-text model's folder, the ZeRO-3 exports: lora/ and full/)."""
    from xtuner.testing.tiny_image_text import build_tiny_qwen2_vl

    root = tmp_path_factory.mktemp("zero3_export")
    build_tiny_qwen2_vl(root / "model")
    _torchrun("export", str(root / "model"), str(root / "zero3"))
    return root / "model", root / "zero3"


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_zero3_export_equals_the_unpartitioned_export(exports, tmp_path, kind):
    from safetensors.torch import load_file

    model_dir, zero3_dir = exports
    _worker_module().build_image_text(str(model_dir), kind == "lora").save_hf(
        tmp_path / "plain")
    plain = load_file(tmp_path / "plain" / "model.safetensors")
    zero3 = load_file(zero3_dir / kind / "model.safetensors")
    assert plain.keys() == zero3.keys()
    assert all(torch.equal(plain[k], zero3[k]) for k in plain)
    assert (zero3_dir / kind / "preprocessor_config.json").exists()  # the processor too


DEMOS = ["demo_tiny_llava_shapes_e12", "demo_tiny_ts_signals_e16"]


@pytest.fixture(scope="module")
def zero3_losses(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("zero3_train") / "losses.json"
    _torchrun("train", str(out), *DEMOS)
    return json.loads(out.read_text())


@pytest.mark.parametrize("config", DEMOS)
def test_zero3_training_gives_the_losses_of_one_process(config, zero3_losses):
    from xtuner.engine.config import load_config
    from xtuner.utils.paths import resolve_config

    worker = _worker_module()
    cfg = load_config(resolve_config(config))
    batches = worker.demo_batches(cfg, 2)
    model = worker.build_demo(cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=worker.LR, weight_decay=0.0)
    expected = []
    for batch in batches:
        loss = model(**model.data_preprocessor(batch, True), mode="loss")["loss"]
        expected.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    got = zero3_losses[config]
    assert got[0] == pytest.approx(expected[0], rel=1e-6)  # the same weights
    assert got[1] == pytest.approx(expected[1], rel=1e-5)  # after one optimizer step
    assert got[1] < got[0]
