"""Activation checkpointing per decoder layer, and the ``'auto'`` mode that fits a memory budget.

Checkpointing every layer (XTuner v0's default) recomputes the whole forward pass in the
backward pass: about a third more compute. Most jobs only need *some* layers checkpointed.
``'auto'`` starts a run with every layer but one checkpointed and measures during the first
training step how many bytes the one plain layer keeps for its backward pass and how much
memory is held when the forward pass ends. After the step it turns checkpointing off for as many
layers as fit under the budget on top of that. The next steps are checked against the budget and
layers are checkpointed back if the peak went over (a longer batch, say).

Layers are the model's ``transformers.modeling_layers.GradientCheckpointingLayer`` instances;
transformers' own ``gradient_checkpointing`` switch on each of them selects the layers.
"""
from __future__ import annotations

import logging
import re

import torch
from mmengine import print_log

__all__ = [
    "checkpointable_layers",
    "set_plain_layers",
    "parse_memory",
    "plan_plain_layers",
    "SavedBytesMeter",
    "ActivationCheckpointingPlan",
]

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40,
          "tib": 2**40}


def parse_memory(value) -> int | None:
    """Bytes from ``34``/``34.5`` (GiB), ``'34GB'``, ``'34 GiB'``, ``'800MB'`` or None.

    Memory sizes follow torch's convention (GB and GiB both mean 2**30 bytes), matching
    ``torch.cuda.max_memory_allocated() / 2**30`` as logged.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"memory budget must be positive, got {value}")
        return int(value * 2**30)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read memory size '{value}' (examples: 34GB, 800MB, 34)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * (_UNITS[unit] if unit else 2**30))


def checkpointable_layers(llm) -> list[torch.nn.Module]:
    """The decoder layers whose checkpointing transformers can switch one by one."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # remote-code models on an older transformers
        return []
    return [m for m in llm.modules() if isinstance(m, GradientCheckpointingLayer)]


def set_plain_layers(layers: list[torch.nn.Module], plain: int) -> None:
    """Checkpoint all ``layers`` except the last ``plain`` ones.

    Requires checkpointing to have been enabled on the model (which installs the
    checkpoint function on each layer); this only flips transformers' per-layer switch. The
    last layers are the ones left plain because their activations are the first the backward
    pass frees.
    """
    plain = max(0, min(plain, len(layers)))
    for index, layer in enumerate(layers):
        layer.gradient_checkpointing = index < len(layers) - plain


def _margin(budget: int) -> int:
    """What a fit leaves free under the budget: 1/32 of it, at least 512 MiB."""
    return max(budget // 32, 2**29)


def plan_plain_layers(peak: int, budget: int, layer_bytes: int, plain: int, total: int,
                      forward_end: int | None = None) -> int:
    """How many layers to leave un-checkpointed after a step that peaked at ``peak`` bytes
    with ``plain`` of ``total`` layers un-checkpointed, each keeping ``layer_bytes``.

    A plain layer's activations live from its forward to its backward, so they add to the
    memory held when the forward ends (``forward_end``), not to the step's peak, which often
    comes later (the gradients and optimizer states at the step's end do not depend on
    checkpointing). Room for more plain layers is therefore the budget minus a small margin
    minus ``forward_end`` (minus ``peak`` when ``forward_end`` is unknown). Over the budget,
    enough plain layers are checkpointed back to get under it.
    """
    if layer_bytes <= 0:
        return plain
    if peak > budget:
        over = peak - budget
        return max(0, plain - -(-over // layer_bytes))
    if forward_end is None:
        room = budget - peak
    else:
        room = budget - _margin(budget) - forward_end
    return max(plain, min(total, plain + room // layer_bytes))


class SavedBytesMeter:
    """Bytes autograd keeps for the backward pass while a module runs (its activations).

    Counts each storage once (a view of a saved tensor adds nothing), and ignores
    parameters, which are alive anyway.
    """

    def __init__(self, module: torch.nn.Module):
        self.bytes = 0
        self._storages: set[int] = set()
        # By storage: DeepSpeed keeps parameters as views of one flat buffer.
        self._params = {p.untyped_storage().data_ptr() for p in module.parameters()}
        self._context = None

    def _pack(self, tensor: torch.Tensor):
        if tensor.device.type != "meta":
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key not in self._storages and key not in self._params:
                self._storages.add(key)
                self.bytes += storage.nbytes()
        return tensor

    def __enter__(self):
        self._context = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        self._context.__exit__(*exc)
        return False


class ActivationCheckpointingPlan:
    """The ``'auto'`` mode's state for one model: measures, then fits the layers to a budget.

    Args:
        llm: the Hugging Face model (checkpointing already enabled on it).
        budget: bytes the run may use at its peak; None means 90% of the GPU's memory.
    """

    def __init__(self, llm, budget: int | None = None):
        self.layers = checkpointable_layers(llm)
        self.budget = budget
        self.layer_bytes = 0
        self.forward_end = None
        self.max_tokens: int | None = None  # the longest batch the data can bring, if known
        self._forward_start = 0
        self._tokens = 0
        self.measuring = True  # the model reports each forward pass's memory while True
        self._default_budget: int | None = None
        self.plain = 1 if self.layers else 0
        # What the step's peak above its start grew by per plain layer between two fits (0
        # until measured).
        self.slope = 0
        self.calibrating = True  # the first fit goes half way, so a second one can measure it
        # (plain layers, tokens, peak above the step's start) of the last fit
        self._previous: tuple[int, int, int] | None = None
        set_plain_layers(self.layers, self.plain)
        self._hook = None
        if self.layers:
            self._hook = self.layers[-1].register_forward_pre_hook(self._start_measuring,
                                                                    with_kwargs=True)

    def _start_measuring(self, module, args, kwargs):
        """Count what the first training call of the last layer saves for backward."""
        if not (module.training and torch.is_grad_enabled()):
            return None
        self._hook.remove()
        meter = SavedBytesMeter(module).__enter__()

        def stop(module, args, kwargs, output):
            meter.__exit__(None, None, None)
            self.layer_bytes = meter.bytes
            self._hook.remove()
            self._hook = None

        self._hook = module.register_forward_hook(stop, with_kwargs=True)
        return None

    @property
    def budget_bytes(self) -> int:
        if self.budget is not None:
            return self.budget
        if self._default_budget is None:
            total = torch.cuda.mem_get_info()[1] if torch.cuda.is_available() else 0
            self._default_budget = int(total * 0.9)
        return self._default_budget

    def note_forward_start(self, tokens: int) -> None:
        """Record a training forward pass's size (tokens, padding included) and the memory
        held before it."""
        if torch.cuda.is_available() and self.forward_end is None:
            self._forward_start = torch.cuda.memory_allocated()
            self._tokens = tokens

    def note_forward_end(self) -> None:
        """Record the memory held when a training forward pass ends (activations kept)."""
        if torch.cuda.is_available():
            self.forward_end = max(self.forward_end or 0, torch.cuda.memory_allocated())

    def _worst_case_scale(self) -> float:
        """Activations grow with the tokens of a batch: fit for the longest batch the data can
        bring (``max_tokens``), not for the one measured (packed rows are always full)."""
        if not self.max_tokens or not self._tokens:
            return 1.0
        return max(1.0, self.max_tokens / self._tokens)

    def update(self, peak: int, held: int | None = None) -> int:
        """Refit after a step that peaked at ``peak`` bytes; returns the plain-layer count.

        ``held``: the memory allocated once the step is over (``memory_allocated()`` after the
        optimizer step). What the step left behind that it did not start with -- AdamW
        creates its states in the first step, 8 bytes a trained parameter, 1.25 GiB on QLoRA
        of an 8B model -- is held by every later step, so it is added to what the fit
        expects; fitting without it ran W2 under a 14.2 GiB cap out of memory.

        The first fit leaves half of the room it finds unused, so that the next one can
        measure what the extra plain layers added to the step's peak (above the memory the
        step started with, for batches of the same size); where that is more than the
        tensors a layer saves, it fits the peak itself to the budget (less a margin) at that
        rate.
        """
        if not self.layers or not self.layer_bytes:
            return self.plain
        scale = self._worst_case_scale()
        start = self._forward_start  # 0 where the forward pass was not measured (no CUDA)
        above = peak - start
        if (self._previous is not None and self._previous[0] != self.plain
                and self._previous[1] == self._tokens):
            before_plain, _, before_above = self._previous
            measured = (above - before_above) / (self.plain - before_plain)
            self.slope = max(self.slope, int(measured * scale))
            self.calibrating = False
        self._previous = (self.plain, self._tokens, above)
        left = max(0, held - start) if held is not None and start else 0
        layer_bytes = int(self.layer_bytes * scale)
        budget = self.budget_bytes
        if self.slope > layer_bytes:
            expected = start + left + int(above * scale)
            plain = plan_plain_layers(expected + _margin(budget), budget, self.slope,
                                      self.plain, len(self.layers))
        else:
            forward_end = self.forward_end
            if forward_end is not None:
                forward_end = int(start + (forward_end - start) * scale) + left
            plain = plan_plain_layers(peak + left, budget, layer_bytes, self.plain,
                                      len(self.layers), forward_end)
        self.forward_end = None
        if self.calibrating and plain > self.plain:
            plain = self.plain + max(1, (plain - self.plain) // 2)
        if plain != self.plain:
            print_log(f"Activation checkpointing (auto): peak {peak / 2**30:.1f} GiB of a "
                      f"{budget / 2**30:.1f} GiB budget, "
                      f"{max(self.layer_bytes, self.slope) / 2**20:.0f} MiB per plain layer -> "
                      f"{len(self.layers) - plain} of {len(self.layers)} layers checkpointed",
                      logger="current", level=logging.INFO)
            self.plain = plain
            set_plain_layers(self.layers, plain)
        return plain

    @property
    def checkpointed(self) -> int:
        """How many layers are checkpointed now."""
        return len(self.layers) - self.plain
