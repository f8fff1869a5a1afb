"""Seed 001's Trainer example, rewritten for this project: full fine-tuning of the tiny demo
LLM on the colorist data (offline, CPU-friendly).

    python tests/train/example_sft.py
    torchrun --nproc-per-node 2 tests/train/example_sft.py
    xtuner train tests/train/example_sft.py  # the file defines `trainer = TrainerConfig(...)`

Settings the tests vary come from the environment (EXAMPLE_WORK_DIR, EXAMPLE_TOTAL_STEP,
EXAMPLE_GLOBAL_BATCH, EXAMPLE_SP_SIZE).
"""
import os

from xtuner.demo import COLORIST_DATA_PATH, TINY_LLM_PATH
from xtuner.train import (
    AdamWConfig,
    CELossConfig,
    DataloaderConfig,
    DatasetConfig,
    LLMConfig,
    LRConfig,
    TokenizeFnConfig,
    Trainer,
    TrainerConfig,
)

# model config
model_cfg = LLMConfig(path=TINY_LLM_PATH, dtype="float32")

# dataset and dataloader config
pack_max_length = 256  # tokens per packed row; each process forwards one row per step
tokenize_fn = TokenizeFnConfig(template="qwen_chat")
dataset_config = [
    {
        "dataset": DatasetConfig(name="colorist", anno_path=COLORIST_DATA_PATH,
                                 sample_ratio=2.0),  # every record twice
        "tokenize_fn": tokenize_fn,
    },
    {
        "dataset": DatasetConfig(name="colorist_half", anno_path=COLORIST_DATA_PATH,
                                 sample_ratio=0.5),  # a seeded random half
        "tokenize_fn": tokenize_fn,
    },
]
dataloader_config = DataloaderConfig(pack_max_length=pack_max_length, pack_level="soft")

# optimizer and lr config
optim_cfg = AdamWConfig(lr=3e-3, betas=(0.9, 0.98), weight_decay=0.0)
lr_cfg = LRConfig(lr_type="cosine", warmup_ratio=0.0, lr_min=1e-4)

# trainer config
trainer = TrainerConfig(
    load_from=TINY_LLM_PATH,  # fine-tune these weights (absent: train from scratch)
    model_cfg=model_cfg,
    optim_cfg=optim_cfg,
    dataset_cfg=dataset_config,
    dataloader_cfg=dataloader_config,
    lr_cfg=lr_cfg,
    tokenizer_path=TINY_LLM_PATH,
    # rows per optimizer step, over all processes: 2 processes accumulate 2 rows each
    global_batch_size=int(os.environ.get("EXAMPLE_GLOBAL_BATCH", "4")),
    total_step=int(os.environ.get("EXAMPLE_TOTAL_STEP", "4")),
    loss_cfg=CELossConfig(mode="eager"),
    work_dir=os.environ.get("EXAMPLE_WORK_DIR", "work_dirs/example_sft"),
    log_interval=1,
    # processes per sequence (sequence parallel): 2 processes with sp_size=2 train each row
    # together, half of its tokens each
    sp_size=int(os.environ.get("EXAMPLE_SP_SIZE", "1")),
)

if __name__ == "__main__":
    Trainer.from_config(trainer).fit()
