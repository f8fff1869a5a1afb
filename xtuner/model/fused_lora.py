"""QLoRA's adapted layer in one autograd function: the 4-bit base matmul and the LoRA branch.

peft's ``Linear4bit`` LoRA layer computes ``base(x).clone() + lora_B(lora_A(dropout(x))) *
scaling`` through three sub-module calls, bitsandbytes' own autograd function and seven
autograd nodes. On QLoRA of a 7-8B model the step is bound by the host launching kernels
(W2 on an H200: the GPU idles more than half of the step), and each of the 224 adapted layers
launches about a dozen small kernels in the forward and more in the backward, several of them
full-size casts and copies of the float32 hidden states (peft's prepared QLoRA model keeps the
residual stream in float32).

:class:`FusedLoraLinear4bit` is peft's ``Linear4bit`` LoRA layer, registered through peft's
custom-module API (``LoraConfig._register_custom_module``), so adapters are created, saved,
merged and loaded exactly as peft's (same module tree and state-dict keys). Its training
forward runs :class:`_QLoraFunction`: the input is cast to the compute dtype once, the base
4-bit matmul and the adapter's down-projection share it, and the adapter's up-projection is
added into the base output by the matmul itself (``addmm``, no clone/scale/add kernels); the
backward adds the base's input gradient into the adapter's the same way and dequantizes the
4-bit weight again as bitsandbytes does (nothing extra is kept). Everything else -- eval or
no-grad passes, disabled/merged/several adapters, DoRA and other variants, trainable base
parameters, ZeRO-3-partitioned adapters, hooks on the adapter sub-modules, dtype mixes other
than "adapters compute in the base's compute dtype", ``torch.compile`` tracing -- goes through
peft's own forward.

The numbers are those of peft's layer up to rounding: the same dropout masks (drawn, as peft
does, on the input in its own dtype), and the sums rounded once (inside the matmul) instead of
after each step.
"""
from __future__ import annotations

import bitsandbytes as bnb
import bitsandbytes.functional as bnb_functional
import torch
from peft.tuners.lora.bnb import Linear4bit

__all__ = ["FusedLoraLinear4bit", "fused_lora_layers"]


class _QLoraFunction(torch.autograd.Function):
    """``base(x) + scale * (dropout(x) @ A.T) @ B.T`` for a bitsandbytes 4-bit ``base``,
    computed in ``dtype`` (the base's compute dtype), returned in ``x``'s dtype."""

    @staticmethod
    def forward(ctx, x, weight_a, weight_b, base, dropout_p, scale, dtype):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        dropped, mask = x2, None
        if dropout_p > 0:
            # On x in its own dtype, as peft does: the same random draws, so the same mask.
            dropped, mask = torch.native_dropout(x2, dropout_p, True)
        x2, dropped = x2.to(dtype), dropped.to(dtype)
        out = base(x2)  # grad is off here: bitsandbytes' fused 4-bit matmul, no autograd
        a, b = weight_a.to(dtype), weight_b.to(dtype)
        down = dropped @ a.t()
        out.addmm_(down, b.t(), alpha=scale)
        ctx.save_for_backward(dropped, mask, a, b, down)
        ctx.base, ctx.dropout_p, ctx.scale, ctx.dtype = base, dropout_p, scale, dtype
        ctx.x_shape, ctx.x_dtype = shape, x.dtype
        ctx.a_dtype, ctx.b_dtype = weight_a.dtype, weight_b.dtype
        return out.to(x.dtype).reshape(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        dropped, mask, a, b, down = ctx.saved_tensors
        grad = grad_out.reshape(-1, grad_out.shape[-1]).to(ctx.dtype)
        grad_down = torch.mm(grad, b).mul_(ctx.scale)
        grad_b = grad_a = grad_x = None
        if ctx.needs_input_grad[2]:
            grad_b = torch.mm(grad.t(), down).mul_(ctx.scale).to(ctx.b_dtype)
        if ctx.needs_input_grad[1]:
            grad_a = torch.mm(grad_down.t(), dropped).to(ctx.a_dtype)
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad_down, a)
            if mask is not None:
                grad_x = torch.ops.aten.native_dropout_backward(
                    grad_x, mask, 1.0 / (1.0 - ctx.dropout_p))
            weight = ctx.base.weight
            dequantized = bnb_functional.dequantize_4bit(weight.data, weight.quant_state)
            grad_x = torch.addmm(grad_x, grad, dequantized.to(ctx.dtype))
            grad_x = grad_x.to(ctx.x_dtype).reshape(ctx.x_shape)
        return grad_x, grad_a, grad_b, None, None, None, None


class FusedLoraLinear4bit(Linear4bit):
    """peft's LoRA ``Linear4bit`` with the training forward in one autograd function
    (see the module docstring); every other case is peft's forward."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        plan = None if args or kwargs else self._fused_plan(x)
        if plan is None:
            return super().forward(x, *args, **kwargs)
        adapter, dtype = plan
        dropout = self.lora_dropout[adapter]
        return _QLoraFunction.apply(
            x, self.lora_A[adapter].weight, self.lora_B[adapter].weight, self.base_layer,
            dropout.p if isinstance(dropout, torch.nn.Dropout) else 0.0,
            self.scaling[adapter], dtype)

    def _fused_plan(self, x: torch.Tensor):
        """``(adapter, compute dtype)`` when the fused function computes what peft's
        forward would, else None."""
        # Train mode only (with or without grad: a checkpointed layer's first forward runs
        # without, and its recomputation must draw the same dropout and round the same).
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
        dropout = self.lora_dropout[adapter]
        base = self.base_layer
        if (lora_b.bias is not None or lora_a.bias is not None
                or not isinstance(dropout, (torch.nn.Dropout, torch.nn.Identity))
                or any(m._forward_hooks or m._forward_pre_hooks
                       for m in (lora_a, lora_b, dropout))
                or hasattr(lora_a.weight, "ds_id")
                or any(p.requires_grad for p in base.parameters())
                or getattr(base.weight.quant_state, "packing_format_for_cpu", False)):
            return None
        # peft computes the adapter in autocast's dtype, else in the adapter's dtype;
        # fused when that is the base's compute dtype and the result keeps x's dtype.
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
        else:
            dtype = lora_a.weight.dtype
        if (dtype != base.compute_dtype or lora_b.weight.dtype != lora_a.weight.dtype
                or torch.promote_types(x.dtype, dtype) != x.dtype):
            return None
        return adapter, dtype


def fused_lora_layers() -> dict:
    """``{bitsandbytes.nn.Linear4bit: FusedLoraLinear4bit}``, the mapping to register with
    ``LoraConfig._register_custom_module``."""
    return {bnb.nn.Linear4bit: FusedLoraLinear4bit}
