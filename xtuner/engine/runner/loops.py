"""``TrainLoop``: iteration-based training given either ``max_iters`` or ``max_epochs``,
with the loss normalised over whole optimizer steps and exact resumption."""
from __future__ import annotations

import logging
import math

import torch
from mmengine import print_log
from mmengine.dist import all_reduce, get_world_size
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator

from xtuner.model.loss import target_weights
from xtuner.utils.errors import ConfigError

from .schedulers import drop_empty_schedulers

__all__ = ["TrainLoop", "step_loss_scale"]


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


def _check_sequence_parallel_sampler(dataloader) -> None:
    """With sequence parallelism every rank of a group must get the same samples."""
    from xtuner.parallel.sequence import (
        SequenceParallelSampler,
        get_sequence_parallel_world_size,
    )

    size = get_sequence_parallel_world_size()
    sampler = getattr(dataloader, "sampler", None)
    if size > 1 and not isinstance(sampler, SequenceParallelSampler):
        raise ConfigError(f"sequence_parallel_size={size} needs "
                          f"train_dataloader.sampler=dict(type=SequenceParallelSampler) (from "
                          f"xtuner.parallel.sequence), got {type(sampler).__name__}: the ranks "
                          "of a sequence-parallel group must see the same samples")


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
        _check_sequence_parallel_sampler(self.dataloader)
        if getattr(self.dataloader, "num_workers", 0) == 0:
            self.dataloader_iterator = _EpochCyclingIterator(self.dataloader)
        # Set by CheckpointHook when resuming; restored once the trained batches are skipped.
        self.resume_rng_state = None
        self._window: list = []  # the prefetched rest of the current optimizer step

    def run(self):
        """mmengine's loop, plus: the random streams of the checkpoint restored after the
        skipped batches, and every micro-batch of an optimizer step fetched before the first
        one runs, to normalise the loss over the step (``loss_reduction``)."""
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        done_in_window = []
        if self._iter > 0:
            print_log(f"Skipping the {self._iter} batches already trained", logger="current",
                      level=logging.INFO)
            window_start = self._window_bounds(self._iter)[0]
            for i in range(self._iter):
                batch = next(self.dataloader_iterator)
                if i >= window_start:  # part of the step the checkpoint interrupted
                    done_in_window.append(batch)
        if self.resume_rng_state is not None:
            from xtuner.engine.resume_state import restore_rng_state

            restore_rng_state(self.resume_rng_state)
            self.resume_rng_state = None
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            if not self._window:
                self._window = self._fetch_window(done_in_window)
                done_in_window = []
            self.run_iter(self._window.pop(0))
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model

    # -- optimizer-step windows ---------------------------------------------------------------
    def _accumulation(self) -> tuple[int, bool]:
        """(micro-batches per optimizer step, whether the wrapper divides the tail step by its
        own length as mmengine's does, rather than by the full count as DeepSpeed does)."""
        wrapper = self.runner.optim_wrapper
        counts = getattr(wrapper, "_accumulative_counts", None)
        if counts is not None:
            return int(counts), True
        strategy = getattr(self.runner, "strategy", None)
        config = getattr(strategy, "config", None) or {}
        return int(config.get("gradient_accumulation_steps", 1)), False

    def _window_bounds(self, iteration: int) -> tuple[int, int]:
        counts, _ = self._accumulation()
        start = iteration - iteration % counts
        return start, min(start + counts, self._max_iters)

    def _loss_reduction(self) -> str | None:
        from xtuner.model.utils import unwrap_model

        reduction = getattr(unwrap_model(self.runner.model), "loss_reduction", None)
        return None if reduction in (None, "v0") else reduction

    def _fetch_window(self, done: list) -> list:
        """The rest of the current optimizer step's micro-batches, each told the scale that
        makes the step's gradient the weighted mean over all its targets on all ranks."""
        start, end = self._window_bounds(self._iter)
        batches = [next(self.dataloader_iterator) for _ in range(end - self._iter)]
        reduction = self._loss_reduction()
        payloads = [_payload(b) for b in batches]
        if reduction is None or any(p is None or "labels" not in p for p in payloads):
            return batches
        weights = [_weights(p, reduction) for p in payloads]
        total = sum(float(w.sum()) for w in weights)
        total += sum(float(_weights(_payload(b), reduction).sum()) for b in done)
        counts, divides_tail = self._accumulation()
        # The optimizer wrapper divides each micro-batch's loss by this, DDP/DeepSpeed
        # average over the ranks: the scale undoes both.
        divisor = (end - start) if divides_tail else counts
        scale = step_loss_scale(total, divisor)
        for payload, weight in zip(payloads, weights):
            payload["loss_scale"] = scale
            payload["num_targets"] = int((weight > 0).sum())
            if reduction != "token":
                payload["loss_weights"] = weight
        return batches


def step_loss_scale(local_total: float, divisor: int) -> float:
    """The factor turning a micro-batch's summed loss into its share of the step's mean.

    ``local_total`` is this rank's summed target weights over the step; the mean divides by
    the sum over all ranks, where the ``N`` ranks of a sequence-parallel group hold the same
    samples and count once. The factor also undoes the wrapper's division by ``divisor``
    micro-batches and the average over all ranks (DDP, DeepSpeed). 0 for a step without
    targets.
    """
    from xtuner.parallel.sequence import get_sequence_parallel_world_size

    total = local_total
    if get_world_size() > 1:
        total_tensor = torch.tensor([total], dtype=torch.float64)
        all_reduce(total_tensor, op="sum")
        total = float(total_tensor) / get_sequence_parallel_world_size()
    return divisor * get_world_size() / total if total else 0.0


def _payload(batch):
    """The model inputs of a collated batch (mmengine's ``{'data': ..., 'data_samples'}``)."""
    if isinstance(batch, dict):
        return batch.get("data", batch) if isinstance(batch.get("data"), dict) else batch
    return None


def _weights(payload: dict, reduction: str) -> torch.Tensor:
    bounds = payload.get("cumulative_len", payload.get("sample_bounds"))
    return target_weights(payload["labels"], reduction, bounds)

