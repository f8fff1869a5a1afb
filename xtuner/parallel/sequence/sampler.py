"""``SequenceParallelSampler`` for v0 configs (size 1 only, for now)."""
from __future__ import annotations

from mmengine.dataset import DefaultSampler

from xtuner.utils.errors import ConfigError

__all__ = ["SequenceParallelSampler"]


class SequenceParallelSampler(DefaultSampler):
    """mmengine's ``DefaultSampler``; with sequence parallelism it would give every rank of a
    sequence-parallel group the same samples. Sizes above 1 are not supported yet.

    Args:
        dataset: the dataset.
        shuffle: shuffle every epoch.
        seed: shuffling seed.
        round_up: pad the indices so every rank gets as many samples.
        sequence_parallel_size: must be 1.
    """

    def __init__(self, dataset, shuffle: bool = True, seed: int | None = None,
                 round_up: bool = True, sequence_parallel_size: int = 1):
        if sequence_parallel_size != 1:
            raise ConfigError(f"sequence_parallel_size={sequence_parallel_size}: sequence "
                              "parallelism is not supported yet; set it to 1")
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
