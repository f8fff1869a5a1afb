"""GPU-only defaults that change no result: fused optimizers, float32 master weights, and
config types that survive a dump."""
from __future__ import annotations

import torch
from mmengine.config import Config

from xtuner.engine.config import _dotted_path
from xtuner.engine.optim import AmpOptimWrapper, fast_optimizer_defaults
from xtuner.model.utils import apply_device_fallbacks


def _wrapper(**optimizer):
    return {"type": "AmpOptimWrapper", "optimizer": {"type": torch.optim.AdamW, "lr": 1e-4,
                                                     **optimizer}}


def test_fused_optimizer_only_on_cuda(monkeypatch):
    assert "fused" not in fast_optimizer_defaults(_wrapper())["optimizer"]  # CPU: unchanged
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    wrapper = fast_optimizer_defaults(_wrapper())
    assert wrapper["optimizer"]["fused"] is True
    assert wrapper["type"] is AmpOptimWrapper
    # the config's own choice wins, and DeepSpeed's CPU offload keeps its own kernels
    assert fast_optimizer_defaults(_wrapper(foreach=True))["optimizer"].get("fused") is None
    assert fast_optimizer_defaults(_wrapper(fused=False))["optimizer"]["fused"] is False
    assert "fused" not in fast_optimizer_defaults(_wrapper(), offload=True)["optimizer"]
    other = {"type": "OptimWrapper", "optimizer": {"type": "Adafactor", "lr": 1e-3}}
    assert fast_optimizer_defaults(other) == {"type": "OptimWrapper",
                                              "optimizer": {"type": "Adafactor", "lr": 1e-3}}


def test_from_pretrained_without_dtype_loads_float32():
    """transformers 5 would keep a bf16 checkpoint in bf16; v0 (transformers 4) loaded fp32,
    which AmpOptimWrapper configs rely on for master weights."""
    from transformers import AutoModelForCausalLM

    cfg = apply_device_fallbacks({"type": AutoModelForCausalLM.from_pretrained,
                                  "pretrained_model_name_or_path": "x"})
    assert cfg["dtype"] is torch.float32
    cfg = apply_device_fallbacks({"type": AutoModelForCausalLM.from_pretrained,
                                  "pretrained_model_name_or_path": "x", "torch_dtype": "auto"})
    assert cfg["dtype"] == "auto"
    assert "dtype" not in apply_device_fallbacks({"type": AutoModelForCausalLM.from_config})


def test_dotted_path_resolves_functions_shadowed_by_their_package():
    from mmengine.registry import FUNCTIONS

    from xtuner.dataset.collate_fns import default_collate_fn

    path = _dotted_path(default_collate_fn)
    assert path == "xtuner.dataset.collate_fns.default_collate_fn"
    assert FUNCTIONS.get(path) is default_collate_fn
    cfg = Config({"collate_fn": {"type": path}})
    assert cfg.collate_fn.type == path


def _lora_config(**model):
    from peft import LoraConfig

    from xtuner.model import SupervisedFinetune

    return Config({"model": {"type": SupervisedFinetune, "llm": {}, "lora": {"type": LoraConfig},
                             **model},
                   "optim_wrapper": {**_wrapper(), "dtype": "float16"}})


def test_16bit_adapters_get_float32_master_weights_on_a_gpu(monkeypatch):
    from xtuner.engine.train_setup import apply_speed_defaults

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = apply_speed_defaults(_lora_config(adapters_16bit=True))
    assert cfg.optim_wrapper.master_weights is True
    # not on by default (measured no faster in xtuner train), nor when turned off
    assert "master_weights" not in apply_speed_defaults(_lora_config()).optim_wrapper
    assert "adapters_16bit" not in apply_speed_defaults(_lora_config()).model
    cfg = apply_speed_defaults(_lora_config(adapters_16bit=False))
    assert "master_weights" not in cfg.optim_wrapper
    # the config's own master_weights stands; DeepSpeed keeps its own masters
    cfg = _lora_config(adapters_16bit=True)
    cfg.optim_wrapper.master_weights = False
    assert apply_speed_defaults(cfg).optim_wrapper.master_weights is False
    zero = _lora_config(adapters_16bit=True)
    zero.optim_wrapper = {"type": "DeepSpeedOptimWrapper", "optimizer": {"type": "AdamW"}}
    zero.strategy = {"type": "DeepSpeedStrategy"}
    assert "master_weights" not in apply_speed_defaults(zero).optim_wrapper


def test_16bit_adapters_without_master_weights_are_refused_in_one_line(monkeypatch):
    import pytest

    from xtuner.engine.train_setup import apply_speed_defaults
    from xtuner.utils.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = _lora_config(adapters_16bit=True)
    cfg.optim_wrapper = {"type": "OptimWrapper", "optimizer": {"type": torch.optim.AdamW}}
    with pytest.raises(ConfigError, match="model.adapters_16bit=True needs float32 master"):
        apply_speed_defaults(cfg)


def test_without_cuda_16bit_adapters_are_turned_off_with_the_fp32_fallback():
    from xtuner.engine.train_setup import _amp_fallback

    cfg = _lora_config(adapters_16bit=True)
    cfg.optim_wrapper.master_weights = True
    _amp_fallback(cfg)
    assert cfg.model.adapters_16bit is False
    assert cfg.optim_wrapper.type.__name__ == "OptimWrapper"
    assert "master_weights" not in cfg.optim_wrapper
