"""Turn ``xtuner train --deepspeed NAME`` into a FlexibleRunner + DeepSpeed config.

The DeepSpeed JSON's ``"auto"`` values are filled from the xtuner config (as v0 did):
micro batch from ``train_dataloader.batch_size``, accumulation from
``optim_wrapper.accumulative_counts``, clipping from ``optim_wrapper.clip_grad.max_norm``;
``fp16``/``bf16`` ``"auto"`` become bf16 where the GPU supports it, else fp16, and neither on a
machine without CUDA (``optim_wrapper.dtype`` is AmpOptimWrapper's, which DeepSpeed replaces; v0
ignored it the same way); a static ``optim_wrapper.loss_scale`` becomes fp16's ``loss_scale``.

Who wins: a value the xtuner config sets wins over a number in the JSON (with a warning), so one
JSON serves every config; where the config sets nothing, the JSON's number wins over xtuner's
default (accumulation 1, clipping 1.0). What DeepSpeed cannot do with the config's optimizer
wrapper (clipping by value or by a non-L2 norm, unknown wrapper keys) is an error, not dropped;
``paramwise_cfg`` and ``constructor`` are kept (mmengine applies them when it builds the
optimizer inside the DeepSpeed strategy).
"""
from __future__ import annotations

import json
import logging

import torch
from mmengine import print_log
from mmengine.config import Config, ConfigDict

from xtuner.utils.errors import ConfigError, SetupError
from xtuner.utils.paths import resolve_deepspeed_config

__all__ = ["apply_deepspeed", "fill_deepspeed_auto_values", "deepspeed_optim_wrapper"]


# optim_wrapper keys DeepSpeed takes over (and where they go) or mmengine still applies.
_TAKEN_OVER = ("type", "optimizer", "clip_grad", "accumulative_counts", "loss_scale", "dtype")
_KEPT = ("paramwise_cfg", "constructor")
_DEFAULTS = {"gradient_accumulation_steps": 1, "gradient_clipping": 1.0}


def _reconcile(ds: dict, key: str, value, source: str) -> None:
    """``value`` is what the config sets (None: it sets nothing)."""
    current = ds.get(key, "auto")
    if value is None:
        if current == "auto":
            ds[key] = _DEFAULTS[key]
        return  # the JSON's own number stands
    if current != "auto" and current != value:
        print_log(f"DeepSpeed {key}={current} differs from the config's {source}={value}; "
                  f"using {value}", logger="current", level=logging.WARNING)
    ds[key] = value


def _clip_norm(wrapper: dict) -> float | None:
    """The L2 max norm ``optim_wrapper.clip_grad`` asks for; 0.0 (off) for an explicit None."""
    if "clip_grad" not in wrapper:
        return None
    clip = wrapper["clip_grad"]
    if clip is None:
        return 0.0
    kind = str(clip.get("type", "norm"))
    norm_type = clip.get("norm_type", 2)
    if kind != "norm" or float(norm_type) != 2.0 or clip.get("max_norm") is None:
        raise ConfigError(f"optim_wrapper.clip_grad={dict(clip)} cannot be applied under "
                          "--deepspeed: DeepSpeed clips only by the L2 norm "
                          "(clip_grad=dict(max_norm=...)); change it or train without "
                          "--deepspeed")
    return float(clip["max_norm"])


def _auto_precision(ds: dict) -> None:
    # As v0: "auto" follows the GPU (bf16 where supported), not the AmpOptimWrapper's dtype,
    # which v0 configs set to float16 whatever the GPU.
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


def _static_loss_scale(ds: dict, wrapper: dict) -> None:
    scale = wrapper.get("loss_scale")
    if scale is None or scale == "dynamic" or isinstance(scale, dict):
        return  # DeepSpeed's fp16 scaling is dynamic by default, as AmpOptimWrapper's
    fp16 = ds.get("fp16") or {}
    if fp16.get("enabled") and "loss_scale" not in fp16:
        fp16["loss_scale"] = float(scale)


def fill_deepspeed_auto_values(ds: dict, cfg: Config) -> dict:
    """Fill the ``"auto"`` fields of a DeepSpeed config dict from the xtuner config.

    Raises:
        ConfigError: the optimizer wrapper asks for something DeepSpeed cannot do, or a field
            is still ``"auto"`` afterwards.
    """
    wrapper = cfg.optim_wrapper
    unknown = sorted(k for k, v in wrapper.items()
                     if k not in _TAKEN_OVER + _KEPT + ("use_fsdp",) and v is not None)
    if unknown:
        raise ConfigError(f"optim_wrapper.{', optim_wrapper.'.join(unknown)} cannot be applied "
                          "under --deepspeed (DeepSpeed's engine takes over the optimizer "
                          "wrapper); remove them or train without --deepspeed")
    counts = wrapper.get("accumulative_counts")
    _reconcile(ds, "gradient_accumulation_steps", None if counts is None else int(counts),
               "optim_wrapper.accumulative_counts")
    _reconcile(ds, "train_micro_batch_size_per_gpu", int(cfg.train_dataloader.batch_size),
               "train_dataloader.batch_size")
    _reconcile(ds, "gradient_clipping", _clip_norm(wrapper), "optim_wrapper.clip_grad.max_norm")
    _auto_precision(ds)
    _static_loss_scale(ds, wrapper)
    leftover = [k for k, v in ds.items() if v == "auto"]
    if leftover:
        raise ConfigError(f"DeepSpeed config fields still 'auto': {', '.join(leftover)}; "
                          "xtuner fills only batch size, accumulation, clipping and precision")
    return ds


def deepspeed_optim_wrapper(wrapper: dict) -> ConfigDict:
    """xtuner's ``DeepSpeedOptimWrapper`` replacing ``wrapper``: the same optimizer, and the
    ``paramwise_cfg``/``constructor`` mmengine applies when it builds it."""
    kept = {k: wrapper[k] for k in _KEPT if wrapper.get(k) is not None}
    return ConfigDict(type="xtuner.engine._strategy.DeepSpeedOptimWrapper",
                      optimizer=wrapper.optimizer, **kept)


def _zero_stage(ds) -> int | None:
    return ((ds.get("zero_optimization") or {}).get("stage", 0)
            if isinstance(ds, dict) else None)


def _check_same_stage(cfg: Config, ds: dict, name_or_path: str) -> None:
    """A config that sets up DeepSpeed itself keeps its own settings: ``--deepspeed`` may
    only repeat its ZeRO stage, not silently lose to it."""
    own = _zero_stage((cfg.get("strategy") or {}).get("config"))
    if own != _zero_stage(ds):
        said = f"ZeRO-{own}" if own is not None else "its own DeepSpeed settings"
        raise ConfigError(f"--deepspeed {name_or_path} asks for ZeRO-{_zero_stage(ds)} but the "
                          f"config already trains with {said} (strategy, optim_wrapper "
                          "DeepSpeedOptimWrapper): drop --deepspeed, or change the config's "
                          "strategy.config")


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
        _check_same_stage(cfg, ds, name_or_path)
        print_log("The config already uses DeepSpeed with this ZeRO stage; --deepspeed adds "
                  "nothing", logger="current", level=logging.WARNING)
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
    cfg.optim_wrapper = deepspeed_optim_wrapper(cfg.optim_wrapper)
    cfg.runner_type = "FlexibleRunner"
    return cfg
