"""How long a packed row fits on one GPU, with and without sequence parallelism.

From one measured run: the memory that does not depend on the row (weights, gradients,
optimizer states: what is allocated when the optimizer step starts) and the peak of the step;
their difference over the tokens one GPU ran is the activation memory per token. With
``sequence_parallel_size = N`` each GPU runs ``1/N`` of a row's tokens, so a row ``N`` times
longer fits in the same memory.

Assumes activation memory grows linearly with the tokens (true with the fused varlen
attention of packed rows; the run's activation checkpointing setting is kept) and that the
per-row memory of the all-to-all buffers is small next to a decoder layer's activations. Under
ZeRO-3 the static part also shrinks with the number of GPUs; the estimate keeps the measured
one, so it errs on the short side.
"""
from __future__ import annotations

__all__ = ["activation_bytes_per_token", "longest_packed_row"]


def activation_bytes_per_token(peak_bytes: float, static_bytes: float, row_tokens: float,
                               measured_sp_size: int = 1) -> float:
    """Activation memory per token on one GPU.

    Args:
        peak_bytes: the step's peak allocated memory.
        static_bytes: memory allocated when the optimizer step starts.
        row_tokens: tokens of the micro-batch (one packed row with varlen attention).
        measured_sp_size: the run's ``sequence_parallel_size`` (each GPU ran ``1/N``).

    Raises:
        ValueError: the numbers leave no activation memory to measure.
    """
    activations = peak_bytes - static_bytes
    tokens = row_tokens / measured_sp_size
    if activations <= 0 or tokens <= 0:
        raise ValueError(f"no activation memory measured (peak {peak_bytes:.0f} B, static "
                         f"{static_bytes:.0f} B, {row_tokens} tokens)")
    return activations / tokens


def longest_packed_row(budget_bytes: float, static_bytes: float, bytes_per_token: float,
                       sp_size: int = 1) -> int:
    """The longest packed row (tokens, a multiple of ``sp_size``) whose step stays within
    ``budget_bytes`` per GPU with ``sequence_parallel_size = sp_size``; 0 when the static
    memory alone exceeds the budget."""
    free = budget_bytes - static_bytes
    if free <= 0:
        return 0
    return int(free // bytes_per_token) * sp_size
