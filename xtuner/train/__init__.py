"""Python training API (seed 001): typed configs and ``Trainer(...).fit()`` over xtuner's
mmengine engine.

Example::

    from xtuner.train import (DataloaderConfig, DatasetConfig, LLMConfig, TokenizeFnConfig,
                              Trainer, TrainerConfig)

    cfg = TrainerConfig(model_cfg=LLMConfig(path="Qwen/Qwen2.5-0.5B-Instruct"), ...)
    Trainer.from_config(cfg).fit()
"""
from .config import (
    AdamWConfig,
    CELossConfig,
    DataloaderConfig,
    DatasetConfig,
    EncoderLLMConfig,
    FSDPConfig,
    ImageTextModelConfig,
    ImageTextTokenizeFnConfig,
    LLMConfig,
    LRConfig,
    ResumeConfig,
    TimeSeriesTokenizeFnConfig,
    TokenizeFnConfig,
    TrainerConfig,
)
from .trainer import Trainer

__all__ = ["AdamWConfig", "CELossConfig", "DataloaderConfig", "DatasetConfig",
           "EncoderLLMConfig", "FSDPConfig", "ImageTextModelConfig", "ImageTextTokenizeFnConfig",
           "LLMConfig", "LRConfig", "ResumeConfig", "TimeSeriesTokenizeFnConfig",
           "TokenizeFnConfig", "Trainer", "TrainerConfig"]
