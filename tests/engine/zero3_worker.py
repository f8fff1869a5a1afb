"""Worker of ``test_zero3_on_cpu.py``, run by ``torchrun`` on DeepSpeed's CPU accelerator
(gloo), every parameter partitioned by ZeRO-3:

    zero3_worker.py export MODEL_DIR OUT_DIR
        an image-text model, with LoRA and fully trained, exported by ``HFCheckpointHook``
        into OUT_DIR/lora and OUT_DIR/full;
    zero3_worker.py train OUT_FILE DEMO_CONFIG...
        two optimizer steps of each demo config's model on its first two batches (every rank
        the same batch, so the averaged gradients are one process's); rank 0 writes the
        losses to OUT_FILE (JSON: config -> losses).
"""
from __future__ import annotations

import copy
import importlib
import json
import sys
from types import SimpleNamespace

import deepspeed
import torch
import torch.distributed as dist

# DeepSpeed's CPU backend would JIT-compile a shared-memory all-reduce kernel (minutes on a
# fresh machine); gloo does the collectives instead.
importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None

LR = 1e-3


def zero3(model):
    """``model`` under ZeRO-3 with AdamW(lr=LR), every parameter partitioned however small."""
    deepspeed.init_distributed(dist_backend="gloo")
    config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
              "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                                    "stage3_gather_16bit_weights_on_model_save": True},
              "optimizer": {"type": "AdamW",
                            "params": {"lr": LR, "weight_decay": 0.0, "torch_adam": True}}}
    engine, *_ = deepspeed.initialize(
        model=model, config=config,
        model_parameters=[p for p in model.parameters() if p.requires_grad])
    assert all(p.numel() == 0 for p in engine.module.parameters()), "not partitioned"
    return engine


def build_image_text(model_dir: str, lora: bool):
    """The model the export test builds too (LoRA weights drawn, not zero)."""
    from peft import LoraConfig

    from xtuner.model.image_text import ImageTextFinetune, build_image_text_model

    torch.manual_seed(0)
    return ImageTextFinetune(
        dict(type=build_image_text_model, pretrained_model_name_or_path=model_dir),
        processor=model_dir, use_activation_checkpointing=False,
        lora=LoraConfig(r=4, lora_alpha=8, init_lora_weights=False) if lora else None)


def build_demo(cfg):
    """A demo config's model as training builds it, without CUDA-only kernels."""
    from xtuner.registry import BUILDER

    model = copy.deepcopy(cfg.model)
    model.update(use_activation_checkpointing=False, use_liger_kernel=False)
    torch.manual_seed(0)
    return BUILDER.build(model).train()


def demo_batches(cfg, count: int) -> list:
    from mmengine.runner import Runner

    torch.manual_seed(0)  # a dataset may draw its samples (the signals demo does)
    batches = []
    for batch in Runner.build_dataloader(cfg.train_dataloader, seed=0):
        batches.append(batch)
        if len(batches) == count:
            return batches
    return batches


def export(model_dir: str, out_dir: str) -> None:
    from mmengine.logging import MMLogger

    from xtuner.engine.hooks import HFCheckpointHook

    for kind in ("lora", "full"):
        engine = zero3(build_image_text(model_dir, kind == "lora"))
        runner = SimpleNamespace(model=engine, strategy=SimpleNamespace(model=SimpleNamespace(
            model=engine)), logger=MMLogger.get_instance("zero3_export"), cfg={})
        HFCheckpointHook()._save(runner, f"{out_dir}/{kind}")
        # the shards are back after the export
        assert all(p.numel() == 0 for p in engine.module.parameters()), "left gathered"


def train(out_file: str, *configs: str) -> None:
    from xtuner.engine.config import load_config
    from xtuner.utils.paths import resolve_config

    # Every config's batches before the process group exists: the sampler then gives every
    # rank one process's batches, not its share of them.
    runs = []
    for config in configs:
        cfg = load_config(resolve_config(config))
        runs.append((config, cfg, demo_batches(cfg, 2)))
    results = {}
    for config, cfg, batches in runs:
        model = build_demo(cfg)
        engine = zero3(model)
        losses = []
        for batch in batches:
            loss = engine(**model.data_preprocessor(batch, True), mode="loss")["loss"]
            losses.append(loss.item())
            engine.backward(loss)
            engine.step()
        results[config] = losses
    if dist.get_rank() == 0:
        with open(out_file, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    {"export": export, "train": train}[sys.argv[1]](*sys.argv[2:])
    dist.barrier()
    dist.destroy_process_group()
