"""Process groups of sequence parallelism (v0's ``setup_distributed`` API).

``sequence_parallel_size = N`` splits every sequence over ``N`` consecutive ranks (one
sequence-parallel group); the ranks with the same position in their groups form a
data-parallel group. All ranks of a sequence-parallel group see the same samples, so the
data-parallel size is ``world_size / N``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from xtuner.utils.errors import ConfigError

__all__ = ["init_sequence_parallel", "get_sequence_parallel_group",
           "get_sequence_parallel_world_size", "get_sequence_parallel_rank",
           "get_data_parallel_group", "get_data_parallel_world_size", "get_data_parallel_rank",
           "get_inner_sequence_parallel_world_size", "get_inner_sequence_parallel_group",
           "get_inner_sequence_parallel_rank", "init_inner_sequence_parallel",
           "is_inner_sequence_parallel_initialized"]


@dataclass(frozen=True)
class _Groups:
    size: int
    sp_group: dist.ProcessGroup
    dp_group: dist.ProcessGroup


# Set once per process when the runner sets up the distributed environment; not per-batch data.
_GROUPS: _Groups | None = None


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_sequence_parallel(sequence_parallel_size: int = 1) -> None:
    """Create the sequence- and data-parallel groups (every rank must call this).

    Consecutive ranks form a sequence-parallel group (``[0..N-1], [N..2N-1], ...``); the
    data-parallel groups are strided (``[0, N, 2N, ...], [1, N+1, ...]``). Size 1 (the default)
    creates nothing and resets an earlier set-up.

    Raises:
        ConfigError: the size is not a positive integer dividing the number of processes.
    """
    global _GROUPS
    size = sequence_parallel_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"sequence_parallel_size={size!r}: use a positive integer")
    rank, world = _world()
    if size == 1:
        _GROUPS = None
        return
    if world % size:
        raise ConfigError(f"sequence_parallel_size={size} needs a multiple of {size} processes, "
                          f"got {world}: launch e.g. NPROC_PER_NODE={size} xtuner train ..., "
                          "or set sequence_parallel_size = 1")
    sp_group = dp_group = None
    # new_group is collective: every rank creates every group, keeping its own.
    for start in range(0, world, size):
        group = dist.new_group(list(range(start, start + size)))
        if start <= rank < start + size:
            sp_group = group
    for offset in range(size):
        group = dist.new_group(list(range(offset, world, size)))
        if rank % size == offset:
            dp_group = group
    _GROUPS = _Groups(size, sp_group, dp_group)


def get_sequence_parallel_group() -> dist.ProcessGroup | None:
    """This rank's sequence-parallel group, or None without sequence parallelism."""
    return None if _GROUPS is None else _GROUPS.sp_group


def get_sequence_parallel_world_size() -> int:
    """``sequence_parallel_size`` (1 without sequence parallelism)."""
    return 1 if _GROUPS is None else _GROUPS.size


def get_sequence_parallel_rank() -> int:
    """This rank's index within its sequence-parallel group (0 without one)."""
    return 0 if _GROUPS is None else dist.get_rank(_GROUPS.sp_group)


def get_data_parallel_group() -> dist.ProcessGroup | None:
    """The ranks holding the same shard of different samples (None: the default group)."""
    return None if _GROUPS is None else _GROUPS.dp_group


def get_data_parallel_world_size() -> int:
    """How many different batches one step trains on: ``world_size / N``."""
    if _GROUPS is None:
        return _world()[1]
    return dist.get_world_size(_GROUPS.dp_group)


def get_data_parallel_rank() -> int:
    """This rank's index among the data-parallel ranks (which samples it gets)."""
    if _GROUPS is None:
        return _world()[0]
    return dist.get_rank(_GROUPS.dp_group)


def get_inner_sequence_parallel_world_size() -> int:
    """v0 split the head dimension too when heads did not divide by N ("inner" sequence
    parallelism); here heads must divide by N (key/value heads are repeated), so it is 1."""
    return 1


def get_inner_sequence_parallel_group() -> None:
    """No inner group (see :func:`get_inner_sequence_parallel_world_size`)."""
    return None


def get_inner_sequence_parallel_rank() -> int:
    """Always 0 (see :func:`get_inner_sequence_parallel_world_size`)."""
    return 0


def is_inner_sequence_parallel_initialized() -> bool:
    """Always False (see :func:`get_inner_sequence_parallel_world_size`)."""
    return False


def init_inner_sequence_parallel(inner_sequence_parallel_size: int = 1) -> None:
    """v0 split head_dim over an inner group when heads did not divide by N; here only size 1
    exists.

    Raises:
        ConfigError: a size other than 1.
    """
    if inner_sequence_parallel_size != 1:
        raise ConfigError(f"inner sequence parallelism ({inner_sequence_parallel_size}) is not "
                          "supported: use a sequence_parallel_size that divides the model's "
                          "attention heads")
