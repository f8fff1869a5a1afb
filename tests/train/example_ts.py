"""Seed 000's Trainer config, rewritten for this project: a 2-layer Wav2Vec2 encoder (random
init) + the tiny demo LLM on the time-series demo signals, offline on CPU.

    python tests/train/example_ts.py
    xtuner train tests/train/example_ts.py

EXAMPLE_WORK_DIR and EXAMPLE_TOTAL_STEP come from the environment.
"""
import os

from transformers import Wav2Vec2Config, Wav2Vec2Model

from xtuner.demo import TINY_LLM_PATH, TS_SIGNALS_DATA_PATH, TS_SIGNALS_DIR
from xtuner.train import (
    AdamWConfig,
    CELossConfig,
    DataloaderConfig,
    DatasetConfig,
    EncoderLLMConfig,
    LRConfig,
    TimeSeriesTokenizeFnConfig,
    Trainer,
    TrainerConfig,
)

encoder_config = dict(
    type=Wav2Vec2Config,
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8),
    num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
    feat_extract_norm="layer", do_stable_layer_norm=True,
    apply_spec_augment=False, mask_time_prob=0.0, layerdrop=0.0)

trainer = TrainerConfig(
    load_from=TINY_LLM_PATH,
    tokenizer_path=TINY_LLM_PATH,
    model_cfg=EncoderLLMConfig(
        path=TINY_LLM_PATH, dtype="float32",
        encoder=dict(type=Wav2Vec2Model, config=encoder_config),
        freeze_llm=False, freeze_encoder=False),  # both tiny: everything trains
    optim_cfg=AdamWConfig(lr=2e-3, weight_decay=0.0, betas=(0.9, 0.98)),
    lr_cfg=LRConfig(lr_type="cosine", warmup_ratio=0.0, lr_min=1e-4),
    dataloader_cfg=DataloaderConfig(
        dataset_config_list=[{
            "dataset": DatasetConfig(name="ts_signals", anno_path=TS_SIGNALS_DATA_PATH,
                                     media_root=TS_SIGNALS_DIR, sample_ratio=1,
                                     class_name="VLMJsonlDataset"),
            "tokenize_fn": TimeSeriesTokenizeFnConfig(),
        }],
        pack_max_length=256, pack_to_max_length=True, num_workers=0),
    loss_cfg=CELossConfig(mode="eager", loss_reduction="square"),
    global_batch_size=2,
    total_step=int(os.environ.get("EXAMPLE_TOTAL_STEP", "6")),
    work_dir=os.environ.get("EXAMPLE_WORK_DIR", "work_dirs/example_ts"),
    log_interval=1,
)

if __name__ == "__main__":
    Trainer.from_config(trainer).fit()
