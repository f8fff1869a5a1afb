"""How the cross-entropy of a training step is normalised (``loss_reduction``).

XTuner v0 averaged the loss over the trained tokens of each micro-batch, so with gradient
accumulation or several ranks a token in a micro-batch with few trained tokens weighed more
than one in a full micro-batch. Here the normaliser is taken over the whole optimizer step
(every micro-batch of the accumulation window, on every data-parallel rank):

- ``token`` (default): every trained token of the step weighs the same (the loss of one big
  batch holding the whole step);
- ``sample``: every sample weighs the same, whatever its length (weight ``1 / n`` for each of
  its ``n`` trained tokens);
- ``square``: in between, weight ``1 / sqrt(n)`` (the XTuner v1 guides' ``square``);
- ``v0``: v0's per-micro-batch mean, to reproduce old runs exactly.

The training loop (:class:`xtuner.engine.runner.TrainLoop`) measures the step's normaliser
before the first micro-batch runs and hands each micro-batch a ``loss_scale`` (and, for
``sample``/``square``, per-token ``loss_weights``); the model multiplies its summed loss by it.
The scale undoes the division by the number of micro-batches (mmengine's optimizer wrapper,
DeepSpeed) and the average over ranks (DDP, DeepSpeed), so the gradient is exactly that of
the weighted mean over the step.
"""
from __future__ import annotations

import torch

from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import ConfigError

__all__ = ["LOSS_REDUCTIONS", "check_loss_reduction", "shifted_weighted_cross_entropy",
           "target_mask", "target_weights", "weighted_cross_entropy"]

LOSS_REDUCTIONS = ("token", "sample", "square", "v0")


def check_loss_reduction(value: str) -> str:
    """Return ``value`` if it names a reduction, else raise a one-line ``ConfigError``."""
    if value not in LOSS_REDUCTIONS:
        raise ConfigError(f"model.loss_reduction={value!r}: use one of "
                          f"{', '.join(map(repr, LOSS_REDUCTIONS))}")
    return value


def target_mask(labels: torch.Tensor) -> torch.Tensor:
    """Which label positions are trained targets (shape of ``labels``).

    The model predicts ``labels[t]`` from position ``t - 1``, so the first label of a row is
    never a target.
    """
    mask = labels != IGNORE_INDEX
    mask[..., 0] = False
    return mask


def _segments(labels: torch.Tensor, cumulative_len) -> list[tuple[int, int, int]]:
    """``(row, start, end)`` of every sample: packed rows carry their sample boundaries
    (``cumulative_len``, one tensor per row), any other row is one sample."""
    rows, width = labels.shape
    if cumulative_len is None:
        return [(r, 0, width) for r in range(rows)]
    if isinstance(cumulative_len, torch.Tensor):
        cumulative_len = [cumulative_len]
    out = []
    for r, bounds in enumerate(cumulative_len):
        bounds = [int(b) for b in bounds]
        out.extend((r, s, e) for s, e in zip(bounds[:-1], bounds[1:]))
    return out


def target_weights(labels: torch.Tensor, reduction: str, cumulative_len=None) -> torch.Tensor:
    """Un-normalised weight of every label position under ``reduction`` (0 where no target).

    Args:
        labels: ``(rows, width)`` labels of one micro-batch.
        reduction: ``'token'``, ``'sample'`` or ``'square'``.
        cumulative_len: the sample boundaries of packed rows (one sequence per row), if any.
    """
    mask = target_mask(labels)
    weights = mask.to(torch.float32)
    if reduction == "token":
        return weights
    for row, start, end in _segments(labels, cumulative_len):
        n = int(mask[row, start:end].sum())
        if n:
            weights[row, start:end] *= 1.0 / n if reduction == "sample" else n ** -0.5
    return weights


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """``sum_t weights[t] * CE(logits[t - 1], labels[t])`` over a micro-batch (float32)."""
    shift_logits = logits[..., :-1, :].float()
    shift_labels = labels[..., 1:]
    ce = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="none")
    return (ce * weights[..., 1:].reshape(-1).to(ce.device)).sum()


def shifted_weighted_cross_entropy(logits: torch.Tensor, shift_labels: torch.Tensor,
                                   shift_weights: torch.Tensor) -> torch.Tensor:
    """``sum_t shift_weights[t] * CE(logits[t], shift_labels[t])`` (float32): the labels and
    weights are already shifted (position ``t`` predicts ``shift_labels[t]``), as in a
    sequence-parallel shard."""
    ce = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), shift_labels.reshape(-1).to(logits.device),
        ignore_index=IGNORE_INDEX, reduction="none")
    return (ce * shift_weights.reshape(-1).to(ce.device)).sum()
