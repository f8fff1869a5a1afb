"""Optimizer wrappers and the optimizer defaults ``xtuner train`` applies on GPUs."""
from __future__ import annotations

import logging

import torch
from mmengine import print_log
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper

from xtuner.engine.config import type_name
from xtuner.model.quantization import HALF_DTYPES

__all__ = ["AmpOptimWrapper", "MasterWeights", "fast_optimizer_defaults"]


class MasterWeights:
    """Float32 master copies of the 16-bit trained parameters an optimizer was given, which
    the optimizer updates in their place (mixed precision with master weights, as DeepSpeed
    and apex's O2 train).

    The model computes with its 16-bit parameters, so autocast has no float32 weight to cast
    in every forward pass; the updates are made, and add up, in float32. The 16-bit
    gradients stay on the model's parameters until the step: DDP reduces them there, and
    they add up there over accumulated micro-batches, in 16-bit (as under DeepSpeed's
    ZeRO-2), where float32 parameters would add them up in float32.

    Args:
        optimizer: its parameter groups are changed in place: each 16-bit parameter that
            requires grad is replaced by its float32 master.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.params: list[torch.nn.Parameter] = []
        self.masters: list[torch.Tensor] = []
        self.slots: list[int] = []  # each master's place among the optimizer's parameters
        slot = 0
        for group in optimizer.param_groups:
            params = []
            for p in group["params"]:
                if p.requires_grad and p.dtype in HALF_DTYPES:
                    master = p.detach().float().requires_grad_(True)
                    self.params.append(p)
                    self.masters.append(master)
                    self.slots.append(slot)
                    p = master
                params.append(p)
                slot += 1
            group["params"] = params

    def __len__(self) -> int:
        return len(self.masters)

    def take_grads(self) -> None:
        """Move the model's 16-bit gradients onto the masters, in float32."""
        for param, master in zip(self.params, self.masters):
            master.grad = None if param.grad is None else param.grad.float()
        self.drop_model_grads()

    def copy_to_model(self) -> None:
        """Round the updated masters into the model's 16-bit parameters."""
        if self.params:
            torch._foreach_copy_([p.data for p in self.params], self.masters)

    def copy_from_model(self) -> None:
        """Start the masters from the model's (16-bit) parameters."""
        if self.params:
            with torch.no_grad():
                torch._foreach_copy_(self.masters, [p.data for p in self.params])

    def drop_model_grads(self) -> None:
        for param in self.params:
            param.grad = None

    def state_dict(self) -> dict[int, torch.Tensor]:
        """The masters by their place among the optimizer's parameters."""
        return dict(zip(self.slots, self.masters))

    @staticmethod
    def load_into(optimizer: torch.optim.Optimizer, saved: dict[int, torch.Tensor]) -> None:
        """Copy saved masters into the optimizer's parameters at the same places: the
        masters of a run that keeps them, or the float32 parameters of one that does not."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        with torch.no_grad():
            for slot, value in saved.items():
                params[int(slot)].copy_(value)


class AmpOptimWrapper(MMEngineAmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` without loss scaling for bfloat16, and with float32
    master weights for 16-bit trained parameters on request.

    bf16 has float32's exponent range, so its gradients do not underflow and need no scaler;
    mmengine's ``GradScaler`` would still unscale every gradient and, in ``step``, read the
    inf-check flag back to the host (a GPU sync in every step). fp16 keeps the scaler.

    Args:
        master_weights: keep a float32 master of each 16-bit parameter that requires grad
            and update it in the parameter's place (:class:`MasterWeights`); the masters are
            saved with the optimizer's state, so a resumed run continues from them exactly.
            Made for ``SupervisedFinetune(adapters_16bit=True)``, with which ``xtuner train``
            turns it on. Without it, a 16-bit parameter is updated in 16-bit.
        loss_scale, dtype, use_fsdp, kwargs: as mmengine's ``AmpOptimWrapper``.
    """

    def __init__(self, loss_scale="dynamic", dtype=None, use_fsdp=False, master_weights=False,
                 **kwargs):
        super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
        if self.cast_dtype is torch.bfloat16:
            self.loss_scaler = None
        self.masters = MasterWeights(self.optimizer) if master_weights else None
        # mmengine builds the wrapper before it loads `load_from`'s weights into the model:
        # unless a checkpoint brings the masters, they are taken from the model at the first
        # step.
        self._masters_current = False
        if self.masters:
            print_log(f"float32 master weights for {len(self.masters)} 16-bit trained "
                      "parameters", logger="current", level=logging.INFO)

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is not None:
            return super().backward(loss, **kwargs)
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        if self.masters is not None:
            if not self._masters_current:
                self.masters.copy_from_model()
                self._masters_current = True
            self.masters.take_grads()
        if self.loss_scaler is not None:
            super().step(**kwargs)
        else:
            if self.clip_grad_kwargs:
                self._clip_grad()
            self.optimizer.step(**kwargs)
        if self.masters is not None:
            self.masters.copy_to_model()

    def zero_grad(self, **kwargs) -> None:
        super().zero_grad(**kwargs)
        if self.masters is not None:  # a step skipped by the caller leaves them there
            self.masters.drop_model_grads()

    def state_dict(self) -> dict:
        state = super().state_dict() if self.loss_scaler is not None \
            else self.optimizer.state_dict()
        if self.masters is not None:
            state["master_weights"] = self.masters.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        masters = state_dict.pop("master_weights", None)
        if self.loss_scaler is None:
            # A checkpoint from an fp16 run (or from mmengine's wrapper) carries scaler state.
            state_dict.pop("loss_scaler", None)
            self.optimizer.load_state_dict(state_dict)
        else:
            super().load_state_dict(state_dict)
        if masters is not None:
            MasterWeights.load_into(self.optimizer, masters)
            if self.masters is not None:
                self.masters.copy_to_model()
                self._masters_current = True
        # else (a checkpoint without masters): the first step takes them from the model


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
