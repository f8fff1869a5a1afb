"""Plan a fine-tuning run's GPU memory to a budget (``xtuner train CFG --memory-budget 8GB``).

The plan takes the levers that save memory in order of what they cost (skipping one that saves
less than 2% of the budget on top of those taken), and stops as soon as the estimate fits:

1. ``fused_loss``: liger's fused linear cross-entropy, so the logits of a row are never
   materialised (on by default on CUDA; saves ``tokens x vocab x 10`` bytes, 2.5 GiB for
   2048 tokens of a 128k vocabulary). Costs nothing.
   ``chunked_logps`` is its counterpart for preference training (DPO, ORPO): the sequences'
   log-probabilities from the output head a chunk of target tokens at a time
   (``model.chunked_logps``), so the logits of the row never exist. Measured, it saved less
   than the logits take (1.8 GiB of 17.2 for DPO at 4,096 tokens; 5.6 of 21.0 for ORPO): the
   estimate keeps the difference (see below). Costs recomputing each chunk's logits in the
   backward pass (about 1% of the step, measured).
2. ``checkpointing``: activation checkpointing, ``'auto'`` (only as many layers as the
   budget needs, fitted from the first step's measurement) or ``'all'`` when not even one
   plain layer fits. Costs recomputation.
3. ``offload_activations``: what checkpointing keeps (each layer's input) waits for the
   backward pass in pinned host memory (transformers' ``offload``, torch's ``save_on_cpu``).
   Costs two copies over PCIe a step; changes no number.
4. ``activations_16bit``: QLoRA only: the hidden states between layers in 16-bit instead of
   float32 (peft's preparation upcasts the embeddings' output and the norms, so the
   checkpointed layer inputs are float32); the same as ``model.activations_16bit=True``.
   Halves what checkpointing keeps; the residual stream is rounded to 16-bit, as in a model
   that is not quantized.
5. ``optimizer_8bit``: bitsandbytes' paged 8-bit AdamW states for the trained weights
   (2 bytes a parameter instead of 8). Costs a slower optimizer step.

What a run needs is estimated from the built model's own tensors (weights, trained parameters)
and from its shapes for the activations. The activation constants were measured on one H200
(Llama-3-8B QLoRA r=64, 2048 tokens: a plain decoder layer keeps 594 MiB for backward,
``16 h + 6 i`` 16-bit values a token; a recomputed layer's backward peaks at about half of it).
Attention that materialises its scores (``eager``, which Gemma 2 trains with to cap its
attention logits) adds ``heads x tokens^2`` scores a layer: a plain layer keeps about 8 bytes
each (the capped 16-bit scores, the float32 softmax and its 16-bit copy), and a recomputed
layer's backward about 12 with their gradients, fitted to an H200 peak of Gemma-2-9B QLoRA r=64
at 2,048 tokens, every layer checkpointed: 8.72 GiB allocated where the estimate without them
said 8.0.
Each run then checks itself: the ``'auto'`` checkpointing plan measures the first step.
A preference run is estimated as supervised fine-tuning on the packed row of its pairs (the
reference's forward pass runs without gradients, before the policy's, and keeps nothing), with
its own logits term: log-probabilities from the whole row's logits keep about 25 bytes a logit
(the 16-bit logits, their float32 copy and log-softmax, and in the backward pass the gradients
of all three; ORPO's NLL term adds its own). Both terms are fitted to H200 peaks of QLoRA r=64
of a Llama-3-8B shape, every layer checkpointed: DPO 20.7 GiB at 4,752 tokens, 17.2 GiB at
4,096; ORPO 21.0 GiB at 4,096; with ``chunked_logps`` 15.4 GiB for both, which is about 10
bytes per (token x vocabulary) more than the chunked path should keep (the estimate counts it,
so a plan never promises what the card cannot hold). Those runs had no autocast; under bf16
autocast, as ``xtuner train`` runs them, DPO with ``chunked_logps`` peaked at 11.0 GiB, so the
excess is likely float32 compute and the estimate is about 18% high for autocast runs.

A budget that even every lever cannot meet is refused before training, in one line that names
the smallest budget that fits.
"""
from __future__ import annotations

import dataclasses
import logging
import math

import torch
from mmengine import print_log

from xtuner.utils.errors import ConfigError

from .checkpointing import checkpointable_layers, parse_memory
from .preference import logps_chunk_tokens

__all__ = ["LEVERS", "MemoryPlan", "MemorySizes", "apply_memory_plan", "estimate_memory",
           "peak_bytes", "plan_memory", "smallest_budget_bytes", "usable_bytes"]

LEVERS = ("fused_loss", "chunked_logps", "checkpointing", "offload_activations",
          "activations_16bit", "optimizer_8bit")

_DESCRIPTIONS = {
    "fused_loss": "fused linear cross-entropy",
    "chunked_logps": "log-probabilities in chunks (no logits)",
    "checkpointing": "activation checkpointing",
    "offload_activations": "checkpointed inputs in host memory",
    "activations_16bit": "16-bit hidden states between layers",
    "optimizer_8bit": "paged 8-bit AdamW states",
}

# liger's fused loss holds ``chunk_mem_const x tokens x hidden`` logits at a time (see
# xtuner.model.kernels.FLCE_CHUNK_MEM_CONST), in 16-bit plus their float32 gradient.
_FUSED_LOSS_ELEMENTS = 8
# Bytes a logit beyond the 16-bit logits themselves: the cross-entropy's float32 copy and its
# gradient; a preference loss's float32 copy and log-softmax, their gradients and the 16-bit
# logits' gradient, fitted to the H200 measurements (ORPO's, with its NLL term, is the
# largest: 20.95 GiB for the row of 4,096 tokens below; see the module docstring).
_LOSS_BYTES_PER_LOGIT = 8
_LOGPS_BYTES_PER_LOGIT = 23
# chunked_logps keeps, measured, about this much per (row token x vocabulary) beyond its
# chunk: DPO and ORPO QLoRA r=64 of a Llama-3-8B shape, 4,096 tokens, every layer
# checkpointed, peaked at 15.4 GiB on the H200 where the other parts add to 10.4 GiB. The
# cause is not found yet; counted so that a plan never promises what the card cannot hold
# (an 8 GB plan without it ran out of memory).
_CHUNKED_LOGPS_BYTES_PER_LOGIT = 10.6
_HEADROOM = 0.97
# ...and leave at least this much (or an eighth of a budget smaller than 2 GiB): on 2 GiB, 3%
# is 61 MiB, and Qwen2.5-1.5B's plan, estimated at 1.9 GiB, ran out of memory at 1.92 GiB
# allocated plus 70 MiB the allocator held unused (H200 capped at 2 GiB).
_MIN_HEADROOM = 256 * 2**20
# A lever that saves less than this share of the budget is not worth what it costs.
_WORTH = 0.02
# Bytes an eager attention score takes: kept by a plain layer; held by a recomputed layer's
# backward (see the module docstring).
_SCORE_BYTES_KEPT = 8
_SCORE_BYTES_RECOMPUTED = 12


def _quant_state_bytes(tensor) -> int:
    """bitsandbytes keeps a 4-bit weight's block scales in its ``quant_state``, outside the
    module's parameters and buffers."""
    state = getattr(tensor, "quant_state", None)
    total = 0
    while state is not None:
        for name in ("absmax", "code"):
            value = getattr(state, name, None)
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
        state = getattr(state, "state2", None)  # double quantization: the scales' scales
    return total


@dataclasses.dataclass(frozen=True)
class MemorySizes:
    """What the estimate needs to know of a model.

    Attributes:
        weights: bytes of every parameter and buffer (quantized weights at their packed size).
        trainable_params: the number of trained parameters.
        trainable_bytes: their bytes (their gradients take as much).
        layers: decoder layers.
        hidden: hidden size.
        intermediate: the MLP's inner size.
        vocab: vocabulary size.
        compute_bytes: bytes of an activation (2: 16-bit compute).
        residual_bytes: bytes of a hidden state between layers (4 for QLoRA after peft).
        preference: the loss comes from sequence log-probabilities (DPO, ORPO).
        masters: the trained weights are 16-bit with float32 masters in the optimizer
            (``adapters_16bit``).
        score_heads: attention heads whose ``tokens x tokens`` scores a layer materialises
            (``eager`` attention); 0 where the attention kernel never keeps them (SDPA, flash,
            varlen). A micro-batch of several rows is counted as one row of all its tokens
            (an upper bound).
    """

    weights: int
    trainable_params: int
    trainable_bytes: int
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    compute_bytes: int = 2
    residual_bytes: int = 2
    preference: bool = False
    masters: bool = False
    score_heads: int = 0

    @classmethod
    def of(cls, model) -> MemorySizes:
        """Measure a :class:`~xtuner.model.SupervisedFinetune` (its ``llm``), or a DPO/ORPO
        model (with a separate reference model's weights)."""
        llm = model.llm
        config = llm.config.get_text_config() if hasattr(llm.config, "get_text_config") \
            else llm.config
        reference = getattr(model, "ref_llm", None)  # DPO's separate reference model
        modules = [llm] if reference is None else [llm, reference]
        weights = sum(t.numel() * t.element_size() + _quant_state_bytes(t)
                      for m in modules for t in (*m.parameters(), *m.buffers()))
        trained = [p for p in llm.parameters() if p.requires_grad]
        trainable_params = sum(p.numel() for p in trained)
        trainable_bytes = sum(p.numel() * p.element_size() for p in trained)
        embedding = llm.get_input_embeddings()
        upcast = getattr(model, "float32_hidden_states", None) is not None
        residual = 4 if upcast or embedding.weight.dtype == torch.float32 else 2
        eager = getattr(config, "_attn_implementation", None) == "eager"
        return cls(weights=weights, trainable_params=trainable_params,
                   trainable_bytes=trainable_bytes,
                   layers=len(checkpointable_layers(llm)) or config.num_hidden_layers,
                   hidden=config.hidden_size,
                   intermediate=getattr(config, "intermediate_size", 4 * config.hidden_size),
                   vocab=config.vocab_size, residual_bytes=residual,
                   preference=hasattr(model, "enable_chunked_logps"),
                   masters=(bool(getattr(model, "adapters_16bit", False))
                            and trainable_bytes < 4 * trainable_params),
                   score_heads=config.num_attention_heads if eager else 0)

    def _layer_values(self, tokens: int) -> int:
        return tokens * (16 * self.hidden + 6 * self.intermediate) * self.compute_bytes

    def plain_layer(self, tokens: int) -> int:
        """Bytes one decoder layer keeps for its backward pass when not checkpointed."""
        return (self._layer_values(tokens)
                + self.score_heads * tokens * tokens * _SCORE_BYTES_KEPT)

    def recomputed_layer(self, tokens: int) -> int:
        """Bytes a checkpointed layer's recomputation and backward pass hold at their peak."""
        return (self._layer_values(tokens) // 2
                + self.score_heads * tokens * tokens * _SCORE_BYTES_RECOMPUTED)


def estimate_memory(sizes: MemorySizes, tokens: int, levers, plain_layers: int = 0
                    ) -> dict[str, int]:
    """Bytes by part for a micro-batch of ``tokens`` with ``levers`` on; the peak is
    :func:`peak_bytes` of them.

    ``forward`` is what is held when the forward pass ends (autocast's 16-bit copies of the
    trained weights, the activations kept for backward, the loss's logits); ``backward`` what
    is held during the backward pass (the gradients, the kept activations, a recomputed
    layer's). Gradients do not exist during the forward pass (mmengine sets them to None).

    Args:
        sizes: the model's sizes.
        tokens: tokens of the largest micro-batch (padding included).
        levers: names from :data:`LEVERS`.
        plain_layers: with checkpointing, layers left plain.
    """
    levers = set(levers)
    optimizer = sizes.trainable_params * (2 if "optimizer_8bit" in levers else 8)
    if sizes.masters:
        optimizer += sizes.trainable_params * 4  # the float32 masters of 16-bit adapters
    plain = sizes.plain_layer(tokens)
    if "checkpointing" in levers:
        residual = 2 if "activations_16bit" in levers else sizes.residual_bytes
        per_layer = tokens * sizes.hidden * residual
        # Offloaded, one layer's input is on the device at a time (the one being copied).
        checkpointed = 1 if "offload_activations" in levers else sizes.layers - plain_layers
        kept = checkpointed * per_layer + plain_layers * plain
        recomputed = sizes.recomputed_layer(tokens)
    else:
        kept, recomputed = sizes.layers * plain, 0
    per_logit = sizes.compute_bytes + (_LOGPS_BYTES_PER_LOGIT if sizes.preference
                                       else _LOSS_BYTES_PER_LOGIT)
    if "fused_loss" in levers:
        logits = _FUSED_LOSS_ELEMENTS * tokens * sizes.hidden * (sizes.compute_bytes + 4)
    elif "chunked_logps" in levers:  # one chunk's logits at a time
        logits = (min(tokens, logps_chunk_tokens(sizes.vocab)) * sizes.vocab * per_logit
                  + int(tokens * sizes.vocab * _CHUNKED_LOGPS_BYTES_PER_LOGIT))
    else:
        logits = tokens * sizes.vocab * per_logit
    # Autocast keeps a 16-bit copy of each float32 trained weight until the forward pass ends.
    casts = (sizes.trainable_params * sizes.compute_bytes
             if sizes.trainable_bytes > sizes.trainable_params * sizes.compute_bytes else 0)
    return {"weights": sizes.weights, "optimizer": optimizer,
            "forward": casts + kept + logits,
            "backward": sizes.trainable_bytes + kept + recomputed}


def peak_bytes(parts: dict[str, int]) -> int:
    """The peak of :func:`estimate_memory`'s parts: weights and optimizer states throughout,
    plus the larger of the forward and backward passes."""
    return parts["weights"] + parts["optimizer"] + max(parts["forward"], parts["backward"])


def _gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


@dataclasses.dataclass
class MemoryPlan:
    """The levers a budget needs and the estimate they give.

    Attributes:
        budget: bytes.
        levers: the chosen levers, in :data:`LEVERS` order.
        checkpointing: ``'auto'`` (fit layers to the budget), ``'all'`` or None.
        estimate: peak bytes by part.
    """

    budget: int
    levers: tuple[str, ...]
    checkpointing: str | None
    estimate: dict[str, int]

    def describe(self) -> str:
        """One line for the log."""
        chosen = ", ".join(_DESCRIPTIONS[name] + (f" ({self.checkpointing})"
                                                  if name == "checkpointing" else "")
                           for name in self.levers) or "nothing"
        parts = ", ".join(f"{k} {_gib(v)}" for k, v in self.estimate.items())
        return (f"memory plan for {_gib(self.budget)}: {chosen}; estimated peak "
                f"{_gib(peak_bytes(self.estimate))} ({parts})")


def usable_bytes(budget_bytes: int) -> int:
    """What a plan may fill of a budget. The estimate is rough and the allocator fragments:
    97% of it, and at most the budget less 256 MiB (less an eighth below 2 GiB)."""
    headroom = max(budget_bytes * (1 - _HEADROOM), min(_MIN_HEADROOM, budget_bytes / 8))
    return int(budget_bytes - headroom)


def smallest_budget_bytes(total: int) -> int:
    """The smallest budget whose :func:`usable_bytes` holds ``total`` bytes."""
    return math.ceil(max(total / _HEADROOM, min(total + _MIN_HEADROOM, total * 8 / 7)))


def plan_memory(sizes: MemorySizes, tokens: int, budget, available=LEVERS) -> MemoryPlan:
    """The cheapest set of levers whose estimate fits ``budget``.

    Args:
        sizes: the model's sizes.
        tokens: tokens of the largest micro-batch.
        budget: a size such as ``'8GB'`` or ``'1024B'`` (a bare number is GiB).
        available: the levers this run can use (e.g. no ``fused_loss`` without liger;
            ``fused_loss`` serves supervised fine-tuning, ``chunked_logps`` preference
            training).

    Raises:
        ConfigError: the budget cannot be read, or not even every lever fits it; the message
            names the smallest budget that fits.
    """
    try:
        budget_bytes = parse_memory(budget)
    except ValueError as exc:
        raise ConfigError(f"memory budget: {exc}") from None
    # A loss takes only its own kind of lever against the logits.
    available = set(available) - {"fused_loss" if sizes.preference else "chunked_logps"}
    usable = usable_bytes(budget_bytes)
    chosen: list[str] = []
    total = peak_bytes(estimate_memory(sizes, tokens, chosen))
    for lever in LEVERS:
        if total <= usable:
            break
        if lever in available:
            with_it = peak_bytes(estimate_memory(sizes, tokens, [*chosen, lever]))
            if total - with_it >= _WORTH * budget_bytes:
                chosen.append(lever)
                total = with_it
    estimate = estimate_memory(sizes, tokens, chosen)
    if total > usable:
        needed = smallest_budget_bytes(total)
        smallest = (f"{math.ceil(needed / 2**30 * 10) / 10}GB" if needed >= 2**30
                    else f"{math.ceil(needed / 2**20)}MB")
        used = ", ".join(_DESCRIPTIONS[n] for n in chosen) or "no lever available"
        raise ConfigError(
            f"memory budget {_gib(budget_bytes)}: {tokens} tokens a micro-batch need about "
            f"{_gib(total)} even with {used}; the smallest budget that fits is {smallest} "
            "(or lower max_length / batch_size)")
    checkpointing = None
    if "offload_activations" in chosen:
        checkpointing = "all"  # offloading goes with every layer checkpointed
    elif "checkpointing" in chosen:
        one_plain = peak_bytes(estimate_memory(sizes, tokens, chosen, plain_layers=1))
        checkpointing = "auto" if one_plain <= usable else "all"
    return MemoryPlan(budget_bytes, tuple(chosen), checkpointing, estimate)


def available_levers(model, optimizer_type: str | None) -> tuple[str, ...]:
    """The levers ``model`` (a :class:`~xtuner.model.SupervisedFinetune`, DPO or ORPO) and the
    optimizer can use."""
    levers = []  # plan_memory keeps the one of the two loss levers the model's loss takes
    if getattr(model, "use_liger_kernel", False):
        levers.append("fused_loss")
    if (hasattr(model, "enable_chunked_logps")
            and getattr(model, "sequence_parallel_size", 1) == 1):
        levers.append("chunked_logps")
    if getattr(model, "use_activation_checkpointing", False) is not False:
        levers.append("checkpointing")
        if torch.cuda.is_available():  # pinned host memory needs an accelerator
            levers.append("offload_activations")
    if (getattr(model, "float32_hidden_states", None) is not None
            and getattr(model, "activations_16bit_mode", "auto") is not False):
        levers.append("activations_16bit")
    if optimizer_type in ("AdamW", "Adam"):
        levers.append("optimizer_8bit")
    return tuple(levers)


def apply_memory_plan(model, plan: MemoryPlan) -> None:
    """Switch the model's levers as ``plan`` says (the optimizer is the constructor's part)."""
    if plan.checkpointing == "all":
        model.checkpointing_plan = None
        model.gradient_checkpointing_enable(offload="offload_activations" in plan.levers)
    elif plan.checkpointing == "auto" and model.checkpointing_plan is not None:
        model.checkpointing_plan.budget = plan.budget
    if "activations_16bit" in plan.levers:
        model.keep_hidden_states_16bit()
    if "chunked_logps" in plan.levers and not model.chunked_logps:
        model.enable_chunked_logps()
    print_log(plan.describe(), logger="current", level=logging.INFO)
