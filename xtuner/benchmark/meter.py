"""``StepMeter``: times each training step and records peak memory, without host syncs."""
from __future__ import annotations

import time

import torch
from mmengine.hooks import Hook

from xtuner.engine.hooks.throughput_hook import ThroughputHook
from xtuner.model.utils import unwrap_model

__all__ = ["StepMeter", "StepTimes", "MeterHook"]


class _Clock:
    """CUDA events on a GPU (read once at the end), ``perf_counter`` on the CPU."""

    def __init__(self):
        self.cuda = torch.cuda.is_available()

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start, end) -> float:
        if self.cuda:
            return start.elapsed_time(end) / 1000
        return end - start


class StepTimes:
    """Per-step seconds: ``data`` (host: fetching and collating the batch), ``compute``
    (forward + backward + gradient clipping) and ``optimizer`` (the optimizer's step)."""

    def __init__(self):
        self.data: list[float] = []
        self.compute: list[float] = []
        self.optimizer: list[float] = []
        self.total: list[float] = []


class StepMeter:
    """Marks the phases of each measured step; the caller marks ``start``/``optimizer``/
    ``end`` (or uses :class:`MeterHook`) and reads :meth:`finish` after the last step.

    Args:
        warmup: steps to run before measuring (``'auto'`` checkpointing settles in the first
            three; kernels are tuned and caches filled).
    """

    def __init__(self, warmup: int, steps: int | None = None):
        self.warmup = warmup
        self.last = None if steps is None else warmup + steps
        self.step = 0
        self._clock = _Clock()
        self._marks: list[tuple] = []
        self._current: dict = {}
        self._data_start = None
        self.peak_allocated = 0
        self.peak_reserved = 0
        # allocated when the optimizer step starts: weights, gradients, optimizer states
        self.static_allocated = 0
        self.sample_lengths: list[list[int]] = []
        self.wall_start = None
        self.wall_seconds = 0.0

    @property
    def measuring(self) -> bool:
        return self.step >= self.warmup and (self.last is None or self.step < self.last)

    def data_start(self) -> None:
        self._data_start = time.perf_counter()

    def start(self, sample_lengths: list[int]) -> None:
        data = time.perf_counter() - self._data_start if self._data_start else 0.0
        self._current = {"data": data, "start": self._clock.mark()}
        if self.measuring:
            self.sample_lengths.append(sample_lengths)

    def optimizer(self) -> None:
        if "start" in self._current and "optimizer" not in self._current:
            self._current["optimizer"] = self._clock.mark()
            if self.measuring and torch.cuda.is_available():
                # no sync: the allocator's counter is host-side
                self.static_allocated = max(self.static_allocated,
                                            torch.cuda.memory_allocated())

    def end(self) -> None:
        if "start" not in self._current:
            return
        self._current["end"] = self._clock.mark()
        self._current.setdefault("optimizer", self._current["end"])
        if self.measuring:
            self._marks.append(self._current)
            if torch.cuda.is_available():
                # Reading the counters does not sync; taking the max after every step is
                # needed because the 'auto' checkpointing hook resets them.
                self.peak_allocated = max(self.peak_allocated, torch.cuda.max_memory_allocated())
                self.peak_reserved = max(self.peak_reserved, torch.cuda.max_memory_reserved())
        self._current = {}
        self.step += 1
        self._data_start = time.perf_counter()
        if self.step == self.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # between the warmup and the measured steps only
                torch.cuda.reset_peak_memory_stats()
            self.wall_start = time.perf_counter()
            self._data_start = self.wall_start

    def stop(self) -> None:
        """After the last step: wait for the GPU and take the measured steps' wall time."""
        if self.wall_seconds or self.wall_start is None:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if self.wall_start is not None:
            self.wall_seconds = time.perf_counter() - self.wall_start

    def finish(self) -> StepTimes:
        """Synchronize once and turn the marks into seconds."""
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times = StepTimes()
        for m in self._marks:
            compute = self._clock.seconds(m["start"], m["optimizer"])
            optimizer = self._clock.seconds(m["optimizer"], m["end"])
            times.data.append(m["data"])
            times.compute.append(compute)
            times.optimizer.append(optimizer)
            times.total.append(m["data"] + compute + optimizer)
        return times


class MeterHook(Hook):
    """Drives a :class:`StepMeter` from mmengine's training loop: the step starts after the
    batch arrived, the optimizer phase starts at the optimizer's own step (a
    ``register_step_pre_hook``, which also fires inside DeepSpeed's optimizer), and the
    step ends when the loop's iteration does."""

    priority = "VERY_HIGH"

    def __init__(self, meter: StepMeter):
        self.meter = meter
        self._handle = None

    def before_train(self, runner) -> None:
        optimizer = runner.optim_wrapper.optimizer
        inner = getattr(optimizer, "optimizer", None)  # DeepSpeed's ZeRO wrappers
        target = inner if isinstance(inner, torch.optim.Optimizer) else optimizer
        self._handle = target.register_step_pre_hook(lambda *_: self.meter.optimizer())
        self._tokens_per_image = getattr(unwrap_model(runner.model), "tokens_per_image", 1)
        self.meter.data_start()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        data = (data_batch or {}).get("data", data_batch or {})
        self.meter.start(ThroughputHook.sample_lengths(data, self._tokens_per_image))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.meter.end()
        if self.meter.step == (self.meter.last or runner.max_iters):
            self.meter.stop()

    def after_train(self, runner) -> None:
        self.meter.stop()
        if self._handle is not None:
            self._handle.remove()

