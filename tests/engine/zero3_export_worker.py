"""Worker of ``test_hf_export_under_zero3.py`` (run by ``torchrun`` on CPU, gloo): an
image-text model partitioned by DeepSpeed ZeRO-3 is exported by ``HFCheckpointHook``.

    torchrun --nproc-per-node 2 zero3_export_worker.py MODEL_DIR OUT_DIR {lora,full}
"""
from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import deepspeed
import torch
import torch.distributed as dist

# DeepSpeed's CPU backend would JIT-compile a shared-memory all-reduce kernel (minutes on a
# fresh machine); gloo does the collectives instead.
importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def build(model_dir: str, lora: bool):
    """The model both the test and this worker build (LoRA weights drawn, not zero)."""
    from peft import LoraConfig

    from xtuner.model.image_text import ImageTextFinetune, build_image_text_model

    torch.manual_seed(0)
    return ImageTextFinetune(
        dict(type=build_image_text_model, pretrained_model_name_or_path=model_dir),
        processor=model_dir, use_activation_checkpointing=False,
        lora=LoraConfig(r=4, lora_alpha=8, init_lora_weights=False) if lora else None)


def main(model_dir: str, out_dir: str, kind: str) -> None:
    from mmengine.logging import MMLogger

    from xtuner.engine.hooks import HFCheckpointHook

    deepspeed.init_distributed(dist_backend="gloo")
    model = build(model_dir, kind == "lora")
    config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
              # every parameter partitioned, however small
              "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                                    "stage3_gather_16bit_weights_on_model_save": True},
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}
    engine, *_ = deepspeed.initialize(
        model=model, config=config,
        model_parameters=[p for p in model.parameters() if p.requires_grad])
    assert all(p.numel() == 0 for p in engine.module.parameters()), "not partitioned"
    runner = SimpleNamespace(model=engine, strategy=SimpleNamespace(model=SimpleNamespace(
        model=engine)), logger=MMLogger.get_instance("zero3_export"), cfg={})
    HFCheckpointHook()._save(runner, out_dir)
    # the shards are back after the export
    assert all(p.numel() == 0 for p in engine.module.parameters()), "left gathered"
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
