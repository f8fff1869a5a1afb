"""Fused Triton kernels from liger-kernel, applied to one model instance.

``SupervisedFinetune(use_liger_kernel=...)``:

* ``'auto'`` (default): on when CUDA and liger-kernel are available and liger supports the
  model type; off otherwise.
* ``True``: required; raises when it cannot be applied.
* ``False``: off.

What is applied: fused linear + cross-entropy (the logits of a packed row are never
materialized), RMSNorm and SwiGLU. liger's RoPE kernel is left out: liger installs it only by
replacing a function in the transformers modeling module. Where the decoder layers are compiled
(``use_torch_compile``), only the fused loss is applied: liger's Triton kernels inside a
compiled layer fail to compile (``CompilationError`` on an H200) and the compiler fuses the
norms and the gated MLP itself.

Only the given instance changes. liger's ``_apply_liger_kernel_to_instance`` patches the
instance's modules and ``forward`` in place, but its per-architecture functions also rebind
names of the transformers modeling module (``modeling_qwen2.Qwen2RMSNorm = LigerRMSNorm``,
``Qwen2MLP = LigerSwiGLUMLP``), which would change every model of that architecture built later
in the process. :func:`apply_liger_kernels` puts those module-level names back afterwards
(:func:`_module_bindings_kept`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from collections.abc import Iterator

import torch
from mmengine import print_log

__all__ = ["liger_supported", "apply_liger_kernels", "liger_loss_kwargs"]

# liger's fused linear cross-entropy splits the tokens into chunks whose logits take at most
# ``chunk_mem_const * tokens * hidden`` elements. Its default (1) makes chunks tiny for large
# vocabularies over small hidden sizes (128 tokens for Qwen2-1.5B at 8k tokens: 64 chunks, each
# re-reading the whole output head and its fp32 gradient), which costs more than the logits it
# saves; 8 gives 1024-token chunks there (~300 MB of transient logits) and is 5x cheaper.
FLCE_CHUNK_MEM_CONST = 8

_LIGER_OPTIONS = dict(rope=False, fused_linear_cross_entropy=True, cross_entropy=False,
                      rms_norm=True, swiglu=True)
# The kernels that run inside a decoder layer (GEGLU: Gemma's MLP); liger passes each
# architecture only the options its function takes.
_LAYER_KERNELS = ("rms_norm", "swiglu", "geglu")


def _liger_table():
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return MODEL_TYPE_TO_APPLY_LIGER_FN


def liger_supported(model) -> tuple[bool, str]:
    """Whether liger kernels can be applied to ``model`` here, and if not, why."""
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    if importlib.util.find_spec("liger_kernel") is None:
        return False, "liger-kernel is not installed (pip install 'xtuner[kernels]')"
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in _liger_table():
        return False, f"liger-kernel has no kernels for model type '{model_type}'"
    return True, ""


def liger_loss_kwargs() -> dict:
    """Extra keyword arguments for a forward pass of a liger-patched model that computes the
    loss (transformers passes model kwargs through to liger's loss function)."""
    return {"chunk_mem_const": FLCE_CHUNK_MEM_CONST}


def _modeling_modules() -> dict:
    return {name: module for name, module in list(sys.modules.items())
            if name.startswith("transformers.models.") and module is not None}


@contextlib.contextmanager
def _module_bindings_kept() -> Iterator[list[str]]:
    """Restore, on leaving, every module-level name and class ``forward`` of transformers'
    loaded modeling modules that the block rebound; yields the list of restored names."""
    modules = _modeling_modules()
    names = {name: dict(vars(module)) for name, module in modules.items()}
    forwards = {}
    for name, values in names.items():
        for attr, value in values.items():
            if isinstance(value, type) and value.__module__ == name:
                forwards[(name, attr)] = (value, value.__dict__.get("forward"))
    restored: list[str] = []
    try:
        yield restored
    finally:
        for name, before in names.items():
            module = modules[name]
            for attr, value in before.items():
                if vars(module).get(attr) is not value:
                    setattr(module, attr, value)
                    restored.append(f"{name}.{attr}")
        for (name, attr), (cls, forward) in forwards.items():
            if cls.__dict__.get("forward") is not forward and forward is not None:
                cls.forward = forward
                restored.append(f"{name}.{attr}.forward")


def apply_liger_kernels(model, mode="auto", layer_kernels: bool = True) -> bool:
    """Apply liger kernels to ``model`` according to ``mode``; returns whether they are on.

    Args:
        model: a transformers causal LM.
        mode: ``'auto'``, True or False (see the module's docstring).
        layer_kernels: also the kernels inside each decoder layer (RMSNorm, SwiGLU or
            GEGLU); False applies the fused loss alone (for compiled layers).

    Raises:
        RuntimeError: ``mode`` is True and the kernels cannot be applied.
    """
    if mode is False or mode is None:
        return False
    ok, reason = liger_supported(model)
    if not ok:
        if mode is True:
            raise RuntimeError(f"use_liger_kernel=True but {reason}")
        return False
    from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance

    options = dict(_LIGER_OPTIONS)
    if not layer_kernels:
        options.update(dict.fromkeys(_LAYER_KERNELS, False))
    with _module_bindings_kept():
        _apply_liger_kernel_to_instance(model=model, **options)
    which = ("fused linear cross-entropy, RMSNorm, SwiGLU" if layer_kernels else
             "fused linear cross-entropy (the compiled layers fuse the norms and the MLP)")
    print_log(f"liger kernels on for {model.config.model_type}: {which}", logger="current",
              level=logging.INFO)
    return True
