"""bitsandbytes 4-bit layers in a model that is trained: keep them in the training layout.

On a CPU with AVX512-BF16, bitsandbytes' ``Linear4bit.forward`` rewrites its 4-bit weight into
a CPU-inference layout the first time it runs in eval mode on an input without grad (an
evaluation, ``generate`` in :class:`~xtuner.engine.hooks.EvaluateChatHook`, a parity check): the
condition is ``x.device.type == 'cpu' and self.support_avx512bf16_for_cpu and not self.training
and not x.requires_grad`` (bitsandbytes 0.50, ``bitsandbytes/nn/modules.py``). For a model
being fine-tuned that rewrite is wrong in three ways:

* it fails on layers narrower than a quantization block (``in_features < blocksize``, 64 for
  NF4) or whose ``out_features`` is not a multiple of 32: ``RuntimeError: shape '[32, 0]' is
  invalid for input of size 16`` in ``_convert_weight_packed_for_cpu``;
* it is never undone when training resumes: from then on every forward, in train mode too,
  takes the inference kernel (``gemv_4bit``), which has no backward to its input, so the
  gradients stop at each quantized layer and the LoRA adapters below it get none (the QLoRA
  demo, whose chat evaluation runs before training, stalled at a loss of ~2.4);
* it is lossy: the block scales are stored as bfloat16, so the base weights an adapter is
  trained against would no longer be those of the checkpoint it is merged into.

The layout is a speed-up for CPU inference only, and each layer decides from its own
``support_avx512bf16_for_cpu`` attribute (read once, in ``__init__``, from
``bitsandbytes.functional.has_avx512bf16``). :func:`keep_4bit_layers_trainable` clears that
attribute on the layers of one model, so they always compute through the training path, on
every CPU, while other models in the process (and bitsandbytes' classes) are untouched.
"""
from __future__ import annotations

import logging

import torch
from mmengine import print_log

__all__ = ["HALF_DTYPES", "Float32HiddenStates", "base_compute_dtype",
           "keep_4bit_layers_trainable", "prepare_kbit_model"]

# The 16-bit floating-point dtypes (compute dtypes of quantized layers, loaded weights).
HALF_DTYPES = (torch.float16, torch.bfloat16)


def _linear4bit_type():
    try:
        import bitsandbytes as bnb
    except ImportError:
        return None
    return bnb.nn.Linear4bit


def base_compute_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The 16-bit dtype ``model``'s frozen base computes in: a bitsandbytes 4-bit layer's
    compute dtype, else the input embeddings' dtype; None when that is not 16-bit."""
    linear4bit = _linear4bit_type()
    dtype = None
    if linear4bit is not None:
        dtype = next((m.compute_dtype for m in model.modules()
                      if isinstance(m, linear4bit) and m.compute_dtype is not None), None)
    if dtype is None:
        dtype = model.get_input_embeddings().weight.dtype
    return dtype if dtype in HALF_DTYPES else None


def keep_4bit_layers_trainable(model: torch.nn.Module) -> int:
    """Keep every bitsandbytes ``Linear4bit`` of ``model`` off the CPU inference layout.

    A layer already rewritten (the model was run in eval mode before it got here) is converted
    back with bitsandbytes' own inverse, with a warning: the round trip has rounded its block
    scales to bfloat16.

    Args:
        model: any module; models without 4-bit layers (or without bitsandbytes) are left
            as they are.

    Returns:
        The number of 4-bit layers seen.
    """
    linear4bit = _linear4bit_type()
    if linear4bit is None:
        return 0
    count = repacked = 0
    for module in model.modules():
        if not isinstance(module, linear4bit):
            continue
        count += 1
        # Per instance: the forward reads this attribute, not the CPU, on every call.
        module.support_avx512bf16_for_cpu = False
        weight = module.weight
        state = getattr(weight, "quant_state", None)
        if getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                weight.data, state)
            module.quant_state = weight.quant_state
            repacked += 1
    if repacked:
        print_log(f"{repacked} 4-bit layers had been converted to bitsandbytes' CPU inference "
                  "layout (the model ran in eval mode before training); converted back, with "
                  "their block scales rounded to bfloat16", logger="current",
                  level=logging.WARNING)
    return count


def _upcast_output(module, args, output):
    # The residual stream stays float32, as after peft's cast of the embedding weights.
    return output.float()


def _match_head_input(module, args):
    # Under autocast the matmul already runs in 16-bit; without it, the float32 hidden states
    # meet a 16-bit weight and are cast as autocast would.
    hidden = args[0]
    if hidden.dtype != module.weight.dtype and not torch.is_autocast_enabled(hidden.device.type):
        return (hidden.to(module.weight.dtype), *args[1:])
    return None


def _embedding_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    found = {}
    for role, module in (("input", model.get_input_embeddings()),
                         ("output", model.get_output_embeddings())):
        weight = getattr(module, "weight", None)
        if weight is not None:
            found[role] = weight
    return found


class Float32HiddenStates:
    """What keeps a prepared QLoRA model's hidden states in float32, as peft's preparation
    leaves them: the float32 hook on the input embedding's output and the frozen 16-bit
    weights peft cast to float32 (the norms: their float32 weight times a 16-bit input is
    float32 again, so without them the stream would return to float32 at the first norm).

    :meth:`remove` puts both back: the hidden states between layers then stay in the 16-bit
    dtype the model was loaded in, as in a model that is not quantized (half the memory a
    checkpointed layer keeps, and no cast around every 4-bit matmul).
    """

    def __init__(self, hook, upcast: dict[torch.nn.Parameter, torch.dtype]):
        self._hook = hook
        self._upcast = upcast

    def remove(self) -> None:
        """Hidden states in 16-bit from now on: the hook removed, the weights cast back to
        their loaded dtype (their values are the loaded ones: the cast up was exact)."""
        if self._hook is not None:
            self._hook.remove()
        for weight, dtype in self._upcast.items():
            weight.data = weight.data.to(dtype)
        self._hook, self._upcast = None, {}


def prepare_kbit_model(model: torch.nn.Module, use_gradient_checkpointing: bool):
    """peft's ``prepare_model_for_kbit_training`` (freeze the quantized base, norms to float32)
    with the frozen input embeddings and output head kept in their loaded 16-bit dtype.

    peft casts every 16-bit parameter to float32, which is right for the small norms but
    doubles the two largest frozen matrices: 4 GB instead of 2 GB for a 128k-token vocabulary
    at hidden size 4096. Both are frozen, so their values are those loaded in 16-bit, and under
    autocast the output head multiplies in 16-bit anyway. So they are parked on the host while
    peft casts (no float32 copy ever reaches the GPU), cast back, and everything downstream is
    kept as it was: the embedding's output is upcast to float32 (a forward hook on this
    instance) and the head's input is cast to the weight's dtype when no autocast does it.

    Args:
        model: a bitsandbytes-quantized transformers model.
        use_gradient_checkpointing: passed to peft.

    Returns:
        ``(model, bytes_saved, float32_stream)``: ``float32_stream`` is the
        :class:`Float32HiddenStates` of the model (None when its embeddings are not 16-bit);
        removing it keeps the hidden states in 16-bit (``activations_16bit``).
    """
    from peft import prepare_model_for_kbit_training

    weights = {role: w for role, w in _embedding_weights(model).items()
               if w.dtype in HALF_DTYPES}
    devices = {id(w): (w.device, w.dtype) for w in weights.values()}
    loaded = {id(p): p.dtype for p in model.parameters() if p.dtype in HALF_DTYPES}
    for weight in weights.values():
        weight.data = weight.data.cpu()
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=use_gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False})
    saved = 0
    for weight in {id(w): w for w in weights.values()}.values():
        device, dtype = devices[id(weight)]
        if weight.requires_grad or weight.dtype != torch.float32:
            weight.data = weight.data.to(device)  # peft left it alone: nothing to undo
            continue
        saved += weight.numel() * (weight.element_size() - torch.finfo(dtype).bits // 8)
        weight.data = weight.data.to(dtype).to(device)
    stream = None
    if "input" in weights and weights["input"].dtype != torch.float32:
        hook = model.get_input_embeddings().register_forward_hook(_upcast_output)
        upcast = {p: loaded[id(p)] for p in model.parameters()
                  if id(p) in loaded and p.dtype == torch.float32 and not p.requires_grad}
        stream = Float32HiddenStates(hook, upcast)
    if "output" in weights and weights["output"].dtype != torch.float32:
        model.get_output_embeddings().register_forward_pre_hook(_match_head_input)
    return model, saved, stream
