"""Variable-length attention for packed rows, as a transformers attention backend.

``SupervisedFinetune(use_varlen_attn=True)`` selects the backend ``"xtuner_varlen"``
(registered through transformers' ``AttentionInterface``; no model code is patched). Each
packed row holds several samples; the model's forward receives their boundaries
(``cu_seq_lens_q``) and the backend keeps every token's attention inside its own sample:

* CUDA, fp16/bf16: one fused kernel over the whole row: ``flash_attn_varlen_func`` when the
  flash-attn package is installed, else torch's ``torch.nn.attention.varlen.varlen_attn``.
* otherwise (CPU, fp32): causal SDPA run per sample -- slow but exact, used by tests.

Calls without sample boundaries (generation, evaluation) go to transformers' SDPA backend.
"""
from __future__ import annotations

import inspect
import logging
from functools import cache

import torch
import torch.nn.functional as F

__all__ = ["VARLEN_ATTN_IMPLEMENTATION", "register_varlen_attention", "varlen_attention_forward"]

VARLEN_ATTN_IMPLEMENTATION = "xtuner_varlen"


def _find_fused_kernel():
    """The fused varlen kernel this install has, as ``kernel(q, k, v, cu, longest, scale)``.

    flash-attn's ``flash_attn_varlen_func`` when the package is installed (it handles GQA
    itself), else torch's ``torch.nn.attention.varlen.varlen_attn``, else None.
    """
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        pass
    else:
        def flash_kernel(q, k, v, cu, longest, scale):
            return flash_attn_varlen_func(q, k, v, cu, cu, longest, longest,
                                          softmax_scale=scale, causal=True)
        return flash_kernel
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    if "is_causal" in params:
        causal = {"is_causal": True}
    elif "window_size" in params:
        causal = {"window_size": (-1, 0)}
    else:
        return None
    has_gqa = "enable_gqa" in params

    def torch_kernel(q, k, v, cu, longest, scale):
        heads, kv_heads = q.shape[1], k.shape[1]
        extra = {}
        if kv_heads != heads:
            if has_gqa:
                extra = {"enable_gqa": True}
            else:
                k, v = _repeat_kv(k, heads // kv_heads), _repeat_kv(v, heads // kv_heads)
        return varlen_attn(q, k, v, cu, cu, longest, longest, scale=scale, **causal, **extra)
    return torch_kernel


# Resolved once, outside any compiled region: the import probing and signature reading above
# are not traceable by torch.compile, and doing them per call split every compiled decoder
# layer at the attention call (graph breaks seen on torch 2.11).
_UNRESOLVED = object()
_FUSED_KERNEL = _UNRESOLVED


def _fused_kernel():
    global _FUSED_KERNEL
    if _FUSED_KERNEL is _UNRESOLVED:
        _FUSED_KERNEL = _find_fused_kernel()
    return _FUSED_KERNEL


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _per_sample_sdpa(q, k, v, cu_seqlens, scale):
    """Exact reference: causal attention within each sample, one SDPA call per sample."""
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end <= start:
            continue
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (H, L, D)
        out[start:end] = F.scaled_dot_product_attention(
            qs, ks, vs, is_causal=True, scale=scale).transpose(0, 1)
    return out


@cache
def _warn_unfused(dtype) -> None:
    from mmengine import print_log

    print_log(f"use_varlen_attn: {dtype} inputs on CUDA have no fused varlen kernel; "
              "attention runs one sample at a time (slow). Train in bf16/fp16 or with "
              "AmpOptimWrapper.", logger="current", level=logging.WARNING)


def varlen_attention_forward(module, query, key, value, attention_mask, dropout=0.0,
                             scaling=None, cu_seq_lens_q=None, cu_seq_lens_k=None,
                             max_length_q=None, max_length_k=None, **kwargs):
    """transformers attention function: ``query`` (B, H, S, D) -> ((B, S, H, D), None)."""
    if cu_seq_lens_q is None or attention_mask is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    if dropout and module.training:
        raise ValueError("attention dropout is not supported with use_varlen_attn=True; "
                         "set the model's attention_dropout to 0")
    if kwargs.get("softcap") is not None:
        raise ValueError("attention logit soft-capping (Gemma 2) is not supported with "
                         "use_varlen_attn=True; set use_varlen_attn=False")
    window = kwargs.get("sliding_window")
    # The collate function passes the longest sample as a Python int; computing it from the
    # CUDA tensor would stall the GPU once per layer.
    longest = (int(max_length_q) if max_length_q is not None
               else int((cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).max()))
    if window is not None and longest > window:
        raise ValueError(f"a {longest}-token sample exceeds the model's sliding window "
                         f"({window}), which use_varlen_attn=True does not apply; use "
                         "shorter max_length or use_varlen_attn=False")
    batch, heads, seq, dim = query.shape
    kv_heads = key.shape[1]
    # A packed batch is one row; rows of a padded batch are laid end to end.
    q = query.transpose(1, 2).reshape(batch * seq, heads, dim)
    k = key.transpose(1, 2).reshape(batch * seq, kv_heads, dim)
    v = value.transpose(1, 2).reshape(batch * seq, kv_heads, dim)
    cu = cu_seq_lens_q.to(device=q.device, dtype=torch.int32)
    if q.is_cuda and q.dtype == torch.float32 and torch.is_autocast_enabled("cuda"):
        # Under autocast over float32 weights, RoPE's float32 cos/sin promote q and k back
        # to float32; SDPA would cast them to the autocast dtype, and so does this backend.
        dtype = torch.get_autocast_dtype("cuda")
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    fused = q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
    if q.is_cuda and not fused:
        _warn_unfused(q.dtype)
    kernel = _fused_kernel() if fused else None
    if kernel is not None:
        out = kernel(q, k, v, cu, longest, scaling)
    else:
        k, v = _repeat_kv(k, heads // kv_heads), _repeat_kv(v, heads // kv_heads)
        out = _per_sample_sdpa(q, k, v, cu, scaling)
    return out.reshape(batch, seq, heads, dim), None


def varlen_attention_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0,
                          mask_function=None, attention_mask=None, **kwargs):
    """Mask builder paired with the backend: no mask unless a batch has padding."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    from transformers.masking_utils import causal_mask_function, sdpa_mask

    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length,
                     q_offset=q_offset, kv_offset=kv_offset,
                     mask_function=mask_function or causal_mask_function,
                     attention_mask=attention_mask, **kwargs)


def register_varlen_attention() -> str:
    """Register the backend with transformers (idempotent) and return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN_ATTN_IMPLEMENTATION, varlen_attention_forward)
    AttentionMaskInterface.register(VARLEN_ATTN_IMPLEMENTATION, varlen_attention_mask)
    _fused_kernel()
    return VARLEN_ATTN_IMPLEMENTATION
