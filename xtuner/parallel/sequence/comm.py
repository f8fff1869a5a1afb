"""Autograd-aware collectives of sequence parallelism (v0's ``comm`` API).

Only ``all_to_all_single`` and ``all_reduce``/``all_gather`` on tensors are used, which gloo
(CPU) supports as well as NCCL; gloo has no list ``all_to_all``.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_to_all", "split_for_sequence_parallel", "gather_for_sequence_parallel",
           "split_forward_gather_backward", "gather_forward_split_backward",
           "reduce_sequence_parallel_loss"]


def _all_to_all(x: torch.Tensor, group, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    world = dist.get_world_size(group)
    if x.shape[scatter_dim] % world:
        raise ValueError(f"all_to_all: dimension {scatter_dim} of size {x.shape[scatter_dim]} "
                         f"does not split into {world} equal parts")
    # chunk j goes to rank j; what arrives from rank i is its chunk, placed i-th on gather_dim
    send = torch.stack(x.chunk(world, dim=scatter_dim))
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return torch.cat(recv.unbind(0), dim=gather_dim)


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, scatter_dim, gather_dim):
        ctx.group, ctx.dims = group, (scatter_dim, gather_dim)
        return _all_to_all(x, group, scatter_dim, gather_dim)

    @staticmethod
    def backward(ctx, grad):
        scatter_dim, gather_dim = ctx.dims
        return _all_to_all(grad.contiguous(), ctx.group, gather_dim, scatter_dim), None, None, None


def all_to_all(x: torch.Tensor, group, scatter_dim: int = 2, gather_dim: int = 1
               ) -> torch.Tensor:
    """Split ``x`` into ``N`` parts along ``scatter_dim``, send part ``j`` to rank ``j`` of
    ``group`` and concatenate what arrives along ``gather_dim`` (differentiable: the backward
    is the inverse all-to-all). E.g. ``(B, H, S/N, D) -> (B, H/N, S, D)`` with
    ``scatter_dim=1, gather_dim=2``."""
    return _AllToAll.apply(x, group, scatter_dim, gather_dim)


def _rank_and_size(group) -> tuple[int, int]:
    return dist.get_rank(group), dist.get_world_size(group)


def split_for_sequence_parallel(x: torch.Tensor, dim: int, group) -> torch.Tensor:
    """This rank's ``1/N`` part of ``x`` along ``dim`` (which must divide by ``N``)."""
    rank, world = _rank_and_size(group)
    if world == 1:
        return x
    if x.shape[dim] % world:
        raise ValueError(f"dimension {dim} of size {x.shape[dim]} does not split into {world} "
                         "parts; pad it with pad_for_sequence_parallel first")
    return x.chunk(world, dim=dim)[rank].contiguous()


def gather_for_sequence_parallel(x: torch.Tensor, dim: int, group) -> torch.Tensor:
    """Concatenate every rank's ``x`` along ``dim`` (no gradient)."""
    world = dist.get_world_size(group)
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


class _SplitOrGather(torch.autograd.Function):
    """Forward: split (``split=True``) or gather along ``dim``; backward: the other one."""

    @staticmethod
    def forward(ctx, x, dim, group, grad_scale, split):
        ctx.dim, ctx.group, ctx.grad_scale, ctx.split = dim, group, grad_scale, split
        op = split_for_sequence_parallel if split else gather_for_sequence_parallel
        return op(x, dim, group)

    @staticmethod
    def backward(ctx, grad):
        op = gather_for_sequence_parallel if ctx.split else split_for_sequence_parallel
        grad = _scaled(op(grad, ctx.dim, ctx.group), ctx.grad_scale, ctx.group)
        return grad, None, None, None, None


def _scaled(grad, grad_scale, group):
    if grad_scale == "up":
        return grad * dist.get_world_size(group)
    if grad_scale == "down":
        return grad / dist.get_world_size(group)
    return grad


def split_forward_gather_backward(x: torch.Tensor, dim: int, group,
                                  grad_scale: str | None = None) -> torch.Tensor:
    """Differentiable :func:`split_for_sequence_parallel` (v0's API); ``grad_scale``
    ``'up'``/``'down'`` multiplies/divides the gradient by ``N``."""
    return _SplitOrGather.apply(x, dim, group, grad_scale, True)


def gather_forward_split_backward(x: torch.Tensor, dim: int, group,
                                  grad_scale: str | None = None) -> torch.Tensor:
    """Differentiable :func:`gather_for_sequence_parallel` (v0's API); ``grad_scale``
    ``'up'``/``'down'`` multiplies/divides the gradient by ``N``."""
    return _SplitOrGather.apply(x, dim, group, grad_scale, False)


def reduce_sequence_parallel_loss(mean_loss: torch.Tensor, loss_scale, sp_group) -> torch.Tensor:
    """v0's helper: the token-weighted mean of the shards' mean losses (``loss_scale``: each
    shard's target count), differentiable (each shard's gradient is its share of the sum).

    xtuner's own models do not need it: their loss is a global sum divided by the global
    count (see :mod:`xtuner.parallel.sequence`).
    """
    if dist.get_world_size(sp_group) == 1:
        return mean_loss
    count = torch.as_tensor(loss_scale, dtype=torch.float32, device=mean_loss.device)
    total = _SumForwardIdentityBackward.apply(mean_loss * count, sp_group)
    count = count.clone()
    dist.all_reduce(count, group=sp_group)
    return total / count.clamp(min=1)


class _SumForwardIdentityBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None
