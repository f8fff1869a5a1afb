"""``SequenceParallelSampler``: every rank of a sequence-parallel group gets the same samples
(v0's sampler)."""
from __future__ import annotations

import math

from mmengine.dataset import DefaultSampler

from xtuner.utils.errors import ConfigError

from .setup_distributed import (
    get_data_parallel_rank,
    get_data_parallel_world_size,
    get_sequence_parallel_world_size,
)

__all__ = ["SequenceParallelSampler"]


class SequenceParallelSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` over the data-parallel ranks: with
    ``sequence_parallel_size = N`` the ``world_size / N`` data-parallel groups get different
    samples and the ``N`` ranks of one sequence-parallel group the same ones. Without
    sequence parallelism it is ``DefaultSampler``.

    Args:
        dataset: the dataset.
        shuffle: shuffle every epoch.
        seed: shuffling seed (None: one drawn and shared by all ranks).
        round_up: pad the indices so every data-parallel rank gets as many samples.
        sequence_parallel_size: optional check: the size the runner set up
            (``sequence_parallel_size`` at the top of the config).
    """

    def __init__(self, dataset, shuffle: bool = True, seed: int | None = None,
                 round_up: bool = True, sequence_parallel_size: int | None = None):
        active = get_sequence_parallel_world_size()
        if sequence_parallel_size not in (None, active):
            raise ConfigError(f"SequenceParallelSampler(sequence_parallel_size="
                              f"{sequence_parallel_size}) but the run is set up with "
                              f"sequence_parallel_size={active}: set the top-level "
                              "sequence_parallel_size of the config (the runner reads it)")
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        # DefaultSampler split the indices over all ranks; split them over the data-parallel
        # ranks instead (the seed it drew is already shared by every rank).
        self.rank = get_data_parallel_rank()
        self.world_size = get_data_parallel_world_size()
        if self.round_up:
            self.num_samples = math.ceil(len(self.dataset) / self.world_size)
            self.total_size = self.num_samples * self.world_size
        else:
            self.num_samples = math.ceil((len(self.dataset) - self.rank) / self.world_size)
            self.total_size = len(self.dataset)
