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
