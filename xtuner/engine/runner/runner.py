"""xtuner's plain (non-DeepSpeed) runner."""
from __future__ import annotations

from mmengine.runner import Runner as MMEngineRunner

from .schedulers import drop_empty_schedulers

__all__ = ["Runner"]


class Runner(MMEngineRunner):
    """mmengine's ``Runner`` that skips LR schedulers lasting no iteration, whatever the train
    loop (so a small dataset does not crash a config with an epoch-based warmup)."""

    def build_param_scheduler(self, scheduler):
        if isinstance(scheduler, list) and self._train_loop is not None:
            self.param_schedulers = scheduler
            drop_empty_schedulers(self, len(self.train_dataloader))
            scheduler = self.param_schedulers
        return super().build_param_scheduler(scheduler)
