"""Optimizer wrappers and the optimizer defaults ``xtuner train`` applies on GPUs."""
from __future__ import annotations

import logging

import torch
from mmengine import print_log
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper

from xtuner.engine.config import type_name

__all__ = ["AmpOptimWrapper", "fast_optimizer_defaults"]


class AmpOptimWrapper(MMEngineAmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` without loss scaling for bfloat16.

    bf16 has float32's exponent range, so its gradients do not underflow and need no scaler;
    mmengine's ``GradScaler`` would still unscale every gradient and, in ``step``, read the
    inf-check flag back to the host (a GPU sync in every step). fp16 keeps the scaler.
    """

    def __init__(self, loss_scale="dynamic", dtype=None, use_fsdp=False, **kwargs):
        super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
        if self.cast_dtype is torch.bfloat16:
            self.loss_scaler = None

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is not None:
            return super().backward(loss, **kwargs)
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        if self.loss_scaler is not None:
            return super().step(**kwargs)
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.optimizer.step(**kwargs)

    def state_dict(self) -> dict:
        if self.loss_scaler is not None:
            return super().state_dict()
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self.loss_scaler is None:
            # A checkpoint from an fp16 run (or from mmengine's wrapper) carries scaler state.
            state_dict = {k: v for k, v in state_dict.items() if k != "loss_scaler"}
            self.optimizer.load_state_dict(state_dict)
            return
        super().load_state_dict(state_dict)


_FUSED_OPTIMIZERS = ("AdamW", "Adam", "SGD")


def fast_optimizer_defaults(optim_wrapper: dict, offload: bool = False) -> dict:
    """On a GPU, use torch's fused AdamW/Adam/SGD kernels (one kernel over all parameters
    instead of several passes; no temporaries the size of the model) unless the config
    chose ``fused``/``foreach`` itself, and xtuner's bf16-aware ``AmpOptimWrapper``.

    ``offload``: DeepSpeed keeps the optimizer on the CPU, where it brings its own kernels.
    """
    if not torch.cuda.is_available():
        return optim_wrapper
    optimizer = optim_wrapper.get("optimizer")
    if (not offload and isinstance(optimizer, dict)
            and type_name(optimizer.get("type")) in _FUSED_OPTIMIZERS
            and "fused" not in optimizer and "foreach" not in optimizer):
        optimizer["fused"] = True
        print_log(f"Using torch's fused {type_name(optimizer.get('type'))} kernel",
                  logger="current", level=logging.INFO)
    if type_name(optim_wrapper.get("type")) == "AmpOptimWrapper":
        optim_wrapper["type"] = AmpOptimWrapper
    return optim_wrapper
