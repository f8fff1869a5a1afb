"""Turn ``xtuner train --deepspeed NAME`` into a FlexibleRunner + DeepSpeed config.

The DeepSpeed JSON's ``"auto"`` values are filled from the xtuner config (as v0 did):
micro batch from ``train_dataloader.batch_size``, accumulation from
``optim_wrapper.accumulative_counts``, clipping from ``optim_wrapper.clip_grad.max_norm``;
``fp16``/``bf16`` ``"auto"`` become bf16 where the GPU supports it, else fp16, and neither on a
machine without CUDA. Values set in the xtuner config win over numbers in the JSON (with a
warning), so one JSON serves every config.
"""
from __future__ import annotations

import json
import logging

import torch
from mmengine import print_log
from mmengine.config import Config, ConfigDict

from xtuner.utils.errors import ConfigError, SetupError
from xtuner.utils.paths import resolve_deepspeed_config

__all__ = ["apply_deepspeed", "fill_deepspeed_auto_values"]


def _reconcile(ds: dict, key: str, value, source: str) -> None:
    current = ds.get(key, "auto")
    if current != "auto" and current != value:
        print_log(f"DeepSpeed {key}={current} differs from the config's {source}={value}; "
                  f"using {value}", logger="current", level=logging.WARNING)
    ds[key] = value


def _auto_precision(ds: dict) -> None:
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    fp16_cfg = ds.setdefault("fp16", {"enabled": "auto"})
    bf16_cfg = ds.setdefault("bf16", {"enabled": "auto"})
    if bf16_cfg.get("enabled") == "auto":
        bf16_cfg["enabled"] = bool(bf16)
    if fp16_cfg.get("enabled") == "auto":
        fp16_cfg["enabled"] = bool(cuda and not bf16_cfg["enabled"])
    if fp16_cfg["enabled"] and bf16_cfg["enabled"]:
        fp16_cfg["enabled"] = False


def fill_deepspeed_auto_values(ds: dict, cfg: Config) -> dict:
    """Fill the ``"auto"`` fields of a DeepSpeed config dict from the xtuner config."""
    wrapper = cfg.optim_wrapper
    _reconcile(ds, "gradient_accumulation_steps", int(wrapper.get("accumulative_counts", 1)),
               "optim_wrapper.accumulative_counts")
    _reconcile(ds, "train_micro_batch_size_per_gpu", int(cfg.train_dataloader.batch_size),
               "train_dataloader.batch_size")
    clip = (wrapper.get("clip_grad") or {}).get("max_norm", 1.0)
    _reconcile(ds, "gradient_clipping", float(clip), "optim_wrapper.clip_grad.max_norm")
    _auto_precision(ds)
    leftover = [k for k, v in ds.items() if v == "auto"]
    if leftover:
        raise ConfigError(f"DeepSpeed config fields still 'auto': {', '.join(leftover)}; "
                          "xtuner fills only batch size, accumulation, clipping and precision")
    return ds


def apply_deepspeed(cfg: Config, name_or_path: str) -> Config:
    """Switch ``cfg`` to mmengine's FlexibleRunner with xtuner's DeepSpeed strategy."""
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise SetupError("--deepspeed needs DeepSpeed: pip install 'xtuner[deepspeed]'") \
            from None
    path = resolve_deepspeed_config(name_or_path)
    with open(path, encoding="utf-8") as f:
        try:
            ds = json.load(f)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    wrapper_type = cfg.optim_wrapper.get("type")
    if "DeepSpeedOptimWrapper" in str(getattr(wrapper_type, "__name__", wrapper_type)):
        print_log("The config already uses DeepSpeed; --deepspeed is ignored", logger="current",
                  level=logging.WARNING)
        return cfg
    fill_deepspeed_auto_values(ds, cfg)
    cfg.strategy = ConfigDict(
        type="xtuner.engine._strategy.DeepSpeedStrategy",
        config=ds,
        gradient_accumulation_steps=ds["gradient_accumulation_steps"],
        train_micro_batch_size_per_gpu=ds["train_micro_batch_size_per_gpu"],
        gradient_clipping=ds["gradient_clipping"],
        exclude_frozen_parameters=True,
        sequence_parallel_size=cfg.get("sequence_parallel_size", 1),
    )
    cfg.optim_wrapper = ConfigDict(type="DeepSpeedOptimWrapper",
                                   optimizer=cfg.optim_wrapper.optimizer)
    cfg.runner_type = "FlexibleRunner"
    return cfg
