"""Seed 001's multimodal Trainer example, for this project: fine-tune a Hugging Face
image-text-to-text model (a tiny random Qwen2-VL built offline) on image-text records mixed
with pure-text ones, packed, loss on assistant turns (CPU-friendly).

    python tests/train/example_image_text.py
    torchrun --nproc-per-node 2 tests/train/example_image_text.py  # after one python run
    xtuner train tests/train/example_image_text.py

Settings the tests vary come from the environment (EXAMPLE_WORK_DIR, EXAMPLE_ASSETS,
EXAMPLE_TOTAL_STEP, EXAMPLE_GLOBAL_BATCH, EXAMPLE_LORA, EXAMPLE_FREEZE_VISION,
EXAMPLE_PACK_LEVEL, EXAMPLE_HF_INTERVAL).
"""
import os
from pathlib import Path

from xtuner.testing.tiny_image_text import build_tiny_qwen2_vl, write_image_text_data
from xtuner.train import (
    AdamWConfig,
    CELossConfig,
    DataloaderConfig,
    DatasetConfig,
    ImageTextModelConfig,
    ImageTextTokenizeFnConfig,
    LRConfig,
    Trainer,
    TrainerConfig,
)

# The model and data, made in code (a real run points at a downloaded model instead,
# e.g. path="Qwen/Qwen2-VL-2B-Instruct").
assets = Path(os.environ.get("EXAMPLE_ASSETS", "work_dirs/example_image_text_assets"))
if not (assets / "model" / "config.json").is_file():
    build_tiny_qwen2_vl(assets / "model")
    write_image_text_data(assets / "data")
model_path = str(assets / "model")

# model config
lora = None
if os.environ.get("EXAMPLE_LORA") == "1":
    from peft import LoraConfig

    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0)
model_cfg = ImageTextModelConfig(
    path=model_path, dtype="float32", lora=lora,
    freeze_vision=os.environ.get("EXAMPLE_FREEZE_VISION", "1") == "1")

# dataset and dataloader config
pack_max_length = 256  # tokens per packed row; each process forwards one row per step
dataset_config = [
    {
        "dataset": DatasetConfig(name="pure_text", anno_path=str(assets / "data/text.jsonl"),
                                 sample_ratio=2.0),  # every record twice
        "tokenize_fn": ImageTextTokenizeFnConfig(),
    },
    {
        "dataset": DatasetConfig(name="media", anno_path=str(assets / "data/media.jsonl"),
                                 media_root=str(assets / "data"), sample_ratio=4.0),
        "tokenize_fn": ImageTextTokenizeFnConfig(),
    },
]
dataloader_config = DataloaderConfig(
    pack_max_length=pack_max_length,
    pack_level=os.environ.get("EXAMPLE_PACK_LEVEL", "expand_soft"),
    collator="sft_vllm_collator")

# optimizer and lr config
optim_cfg = AdamWConfig(lr=3e-3, betas=(0.9, 0.98), weight_decay=0.0)
lr_cfg = LRConfig(lr_type="cosine", warmup_ratio=0.0, lr_min=1e-4)

hf_interval = int(os.environ.get("EXAMPLE_HF_INTERVAL", "0")) or None

# trainer config
trainer = TrainerConfig(
    load_from=model_path,  # fine-tune these weights (absent: train from scratch)
    model_cfg=model_cfg,
    optim_cfg=optim_cfg,
    dataset_cfg=dataset_config,
    dataloader_cfg=dataloader_config,
    lr_cfg=lr_cfg,
    tokenizer_path=model_path,  # the processor's folder
    global_batch_size=int(os.environ.get("EXAMPLE_GLOBAL_BATCH", "4")),
    total_step=int(os.environ.get("EXAMPLE_TOTAL_STEP", "4")),
    loss_cfg=CELossConfig(mode="eager"),
    hf_interval=hf_interval,
    hf_max_keep=2 if hf_interval else None,
    work_dir=os.environ.get("EXAMPLE_WORK_DIR", "work_dirs/example_image_text"),
    log_interval=1,
)

if __name__ == "__main__":
    Trainer.from_config(trainer).fit()
