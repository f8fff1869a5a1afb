"""``TrainLoop``: iteration-based training given either ``max_iters`` or ``max_epochs``."""
from __future__ import annotations

import math

from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator

from xtuner.utils.errors import ConfigError

from .schedulers import drop_empty_schedulers

__all__ = ["TrainLoop"]


class _EpochCyclingIterator(_InfiniteDataloaderIterator):
    """mmengine's infinite iterator without its 2 s pause at every epoch end when the
    dataloader has no worker processes (the pause guards against worker deadlocks; with a
    small dataset it was most of the run time)."""

    def __next__(self):
        try:
            return next(self._iterator)
        except StopIteration:
            self._epoch += 1
            for sampler in (getattr(self._dataloader, "sampler", None),
                            getattr(getattr(self._dataloader, "batch_sampler", None),
                                    "sampler", None)):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(self._epoch)
                    break
            self._iterator = iter(self._dataloader)
            return next(self._iterator)


class TrainLoop(IterBasedTrainLoop):
    """XTuner v0's loop: all training is counted in iterations (checkpoints are ``iter_N``).

    Args:
        runner: the mmengine runner.
        dataloader: the training dataloader (or its config).
        max_iters: total iterations; or
        max_epochs: total epochs, turned into ``max_epochs * len(dataloader)`` iterations
            (fractional epochs are rounded up to a whole iteration).
    """

    def __init__(self, runner, dataloader, max_iters=None, max_epochs=None, **kwargs):
        if (max_iters is None) == (max_epochs is None):
            raise ConfigError("train_cfg needs exactly one of max_iters and max_epochs")
        if max_iters is not None:
            if int(max_iters) != max_iters:
                raise ConfigError(f"train_cfg.max_iters must be an integer, got {max_iters}")
            iters = int(max_iters)
        else:
            if isinstance(dataloader, dict):
                dataloader = runner.build_dataloader(dataloader, seed=runner.seed,
                                                     diff_rank_seed=runner._randomness_cfg.get(
                                                         "diff_rank_seed", False))
            if len(dataloader) == 0:
                raise ConfigError("the training dataloader is empty: the dataset has fewer "
                                  "samples than one batch (check the data and batch_size)")
            iters = max(1, math.ceil(max_epochs * len(dataloader)))
        super().__init__(runner=runner, dataloader=dataloader, max_iters=iters, **kwargs)
        drop_empty_schedulers(runner, len(self.dataloader))
        if getattr(self.dataloader, "num_workers", 0) == 0:
            self.dataloader_iterator = _EpochCyclingIterator(self.dataloader)

