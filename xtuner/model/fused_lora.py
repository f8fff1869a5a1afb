"""QLoRA's adapted layer in one autograd function: the 4-bit base matmul and the LoRA branch.

peft's ``Linear4bit`` LoRA layer computes ``base(x).clone() + lora_B(lora_A(dropout(x))) *
scaling`` through three sub-module calls, bitsandbytes' own autograd function and about seven
autograd nodes, each launching its own small kernels. QLoRA's step is bound by the host
launching kernels (README, "Performance"), so fewer launches and less Python per layer count.

:class:`FusedLoraLinear4bit` is peft's ``Linear4bit`` LoRA layer, registered through peft's
custom-module API (``LoraConfig._register_custom_module``), so adapters are created, saved,
merged and loaded exactly as peft's (same module tree and state-dict keys). In train mode its
forward runs :class:`_QLoraFunction`: the input is cast to the compute dtype once for the base
4-bit matmul and the adapter; no clone of the base output; the backward dequantizes the 4-bit
weight again as bitsandbytes does (nothing extra is kept). When the input already has the
compute dtype, the adapter's output is added inside the matmul (``addmm``) and so is the
base's input gradient. When it does not (peft's prepared QLoRA model keeps the hidden states
in float32), the sums are taken in the input's dtype, as peft takes them, so a small adapter
update is not rounded away in 16-bit.

Dropout is drawn where peft draws it (on the input in its own dtype under autocast, after the
cast to the adapter's dtype without), so the masks are peft's. Everything else -- eval passes,
disabled/merged/several adapters, DoRA and other variants, adapter biases, trainable base
parameters, ZeRO-3-partitioned adapters, module hooks, a dropout module that is not a plain
``nn.Dropout`` in train mode, ``torch.compile`` tracing, and adapters that compute in another
dtype than the base -- goes through peft's own forward.
"""
from __future__ import annotations

import logging

import bitsandbytes as bnb
import bitsandbytes.functional as bnb_functional
import torch
from mmengine import print_log
from peft.tuners.lora.bnb import Linear4bit
from torch.nn.modules import module as torch_module

__all__ = ["FusedLoraLinear4bit", "fused_lora_layers"]


class _QLoraFunction(torch.autograd.Function):
    """``base(x) + scale * (dropout(x) @ A.T) @ B.T`` for a bitsandbytes 4-bit ``base``,
    computed in ``dtype`` (the base's compute dtype) and returned in ``x``'s dtype."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight_a: torch.Tensor, weight_b: torch.Tensor,
                base: torch.nn.Module, dropout_p: float, scale: float, dtype: torch.dtype,
                drop_before_cast: bool) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        cast = x2.to(dtype)
        dropped, mask, drop_dtype = cast, None, dtype
        if dropout_p > 0:
            source = x2 if drop_before_cast else cast
            dropped, mask = torch.native_dropout(source, dropout_p, True)
            dropped, drop_dtype = dropped.to(dtype), source.dtype
        out = base(cast)  # grad is off here: bitsandbytes' fused 4-bit matmul, no autograd
        a, b = weight_a.to(dtype), weight_b.to(dtype)
        down = dropped @ a.t()
        if x.dtype == dtype:
            out.addmm_(down, b.t(), alpha=scale)
        else:  # peft adds the 16-bit adapter output to the base output in x's dtype
            out = out.to(x.dtype).add_(down @ b.t(), alpha=scale)
        ctx.save_for_backward(dropped, mask, a, b, down, base.weight)
        ctx.quant_state, ctx.dropout_p, ctx.scale, ctx.dtype = (
            base.weight.quant_state, dropout_p, scale, dtype)
        ctx.x_shape, ctx.x_dtype, ctx.drop_dtype = shape, x.dtype, drop_dtype
        ctx.a_dtype, ctx.b_dtype = weight_a.dtype, weight_b.dtype
        return out.reshape(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        dropped, mask, a, b, down, weight = ctx.saved_tensors
        grad = grad_out.reshape(-1, grad_out.shape[-1]).to(ctx.dtype)
        need_x, need_a, need_b = ctx.needs_input_grad[:3]
        grad_a = grad_b = grad_x = None
        if need_b:
            grad_b = torch.mm(grad.t(), down).mul_(ctx.scale).to(ctx.b_dtype)
        if need_x or need_a:
            grad_down = torch.mm(grad, b).mul_(ctx.scale)
        if need_a:
            grad_a = torch.mm(grad_down.t(), dropped).to(ctx.a_dtype)
        if need_x:
            # the adapter's input gradient, back through the dropout in the dtype it was drawn in
            lora = torch.mm(grad_down, a).to(ctx.drop_dtype)
            if mask is not None:
                lora = torch.ops.aten.native_dropout_backward(
                    lora, mask, 1.0 / (1.0 - ctx.dropout_p))
            dequantized = bnb_functional.dequantize_4bit(weight, ctx.quant_state).to(ctx.dtype)
            if ctx.x_dtype == ctx.dtype and lora.dtype == ctx.dtype:
                grad_x = torch.addmm(lora, grad, dequantized)
            else:  # summed in x's dtype, as peft's autograd sums the two branches
                grad_x = torch.mm(grad, dequantized).to(ctx.x_dtype).add_(lora)
            grad_x = grad_x.reshape(ctx.x_shape)
        return grad_x, grad_a, grad_b, None, None, None, None, None


def _has_hooks(module: torch.nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


class FusedLoraLinear4bit(Linear4bit):
    """peft's LoRA ``Linear4bit`` whose train-mode forward is one autograd function (see the
    module docstring); every other case runs peft's forward."""

    _warned_dtypes = False  # one warning a process when the adapters compute in another dtype

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """peft's ``Linear4bit.forward``, fused when :meth:`_fused_plan` allows it."""
        plan = None if args or kwargs else self._fused_plan(x)
        if plan is None:
            return super().forward(x, *args, **kwargs)
        adapter, dtype, dropout_p = plan
        return _QLoraFunction.apply(
            x, self.lora_A[adapter].weight, self.lora_B[adapter].weight, self.base_layer,
            dropout_p, self.scaling[adapter], dtype,
            torch.is_autocast_enabled(x.device.type))

    def _fused_plan(self, x: torch.Tensor) -> tuple[str, torch.dtype, float] | None:
        """``(adapter, compute dtype, dropout probability)`` when the fused function computes
        what peft's forward would, else None."""
        # Train mode, with or without grad: a checkpointed layer's first forward runs without,
        # and its recomputation must draw the same dropout and round the same.
        if (not self.training or self.disable_adapters or self.merged
                or torch.compiler.is_compiling()):
            return None
        adapters = self.active_adapters
        if len(adapters) != 1:
            return None
        adapter = adapters[0]
        if adapter not in self.lora_A or adapter in self.lora_variant:
            return None
        lora_a, lora_b = self.lora_A[adapter], self.lora_B[adapter]
        dropout, base = self.lora_dropout[adapter], self.base_layer
        if type(dropout) is torch.nn.Dropout:
            dropout_p = dropout.p if dropout.training else 0.0
        elif type(dropout) is torch.nn.Identity:
            dropout_p = 0.0
        else:
            return None
        if (dropout_p >= 1 or lora_b.bias is not None or lora_a.bias is not None
                or any(map(_has_hooks, (base, lora_a, lora_b, dropout)))
                or torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks
                or hasattr(lora_a.weight, "ds_id")
                or base.weight.requires_grad
                or (base.bias is not None and base.bias.requires_grad)
                or getattr(base.weight.quant_state, "packing_format_for_cpu", False)):
            return None
        # peft computes the adapter in autocast's dtype, else in the adapter's own dtype;
        # fused when that is the base's compute dtype and x's dtype holds the result.
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
        else:
            dtype = lora_a.weight.dtype
        if (dtype != base.compute_dtype or lora_b.weight.dtype != lora_a.weight.dtype
                or torch.promote_types(x.dtype, dtype) != x.dtype):
            if not FusedLoraLinear4bit._warned_dtypes and torch.is_grad_enabled():
                FusedLoraLinear4bit._warned_dtypes = True
                print_log(f"fused_lora: the LoRA adapters compute in {dtype} and the 4-bit base "
                          f"in {base.compute_dtype}; peft's layers run (train under autocast "
                          "of the base's dtype, as AmpOptimWrapper does, or with "
                          "adapters_16bit=True, to fuse them)", logger="current",
                          level=logging.WARNING)
            return None
        return adapter, dtype, dropout_p


def fused_lora_layers() -> dict[type, type]:
    """The mapping to register with ``LoraConfig._register_custom_module``:
    ``{bitsandbytes.nn.Linear4bit: FusedLoraLinear4bit}``."""
    return {bnb.nn.Linear4bit: FusedLoraLinear4bit}
