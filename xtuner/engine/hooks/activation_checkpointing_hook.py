"""``ActivationCheckpointingHook``: feeds each step's peak memory to the ``'auto'`` mode."""
from __future__ import annotations

import torch
from mmengine.hooks import Hook

from xtuner.model.utils import unwrap_model

__all__ = ["ActivationCheckpointingHook"]


class ActivationCheckpointingHook(Hook):
    """After each of the first ``refit_iters`` training steps, refit which decoder layers are
    checkpointed (``SupervisedFinetune(use_activation_checkpointing='auto')``) to the step's
    peak allocated memory. ``xtuner train`` adds it on GPUs; it does nothing for other models.

    The first step runs with all layers but one checkpointed and measures that one; the
    second runs half of the fit and measures what it cost the peak; the third applies the
    calibrated fit; later steps check it held (a tighter fit is never tried again, only more
    checkpointing if a step went over the budget). While the first fit found no room for
    another plain layer, each step fits again, up to ``refit_iters``.
    """

    # Before LoggerHook (BELOW_NORMAL), which resets the peak-memory counter when it logs.
    priority = "NORMAL"

    def __init__(self, refit_iters: int = 20):
        self.refit_iters = refit_iters

    @staticmethod
    def _model(runner):
        model = unwrap_model(runner.model)
        return model if getattr(model, "checkpointing_plan", None) is not None else None

    def before_train(self, runner) -> None:
        model = self._model(runner)
        if model is None:
            return
        from xtuner.engine.config import config_max_length

        # Fit for the longest batch the data can bring (unpacked data varies in length).
        max_length = config_max_length(runner.cfg)
        batch_size = (runner.cfg.get("train_dataloader") or {}).get("batch_size") or 1
        if max_length:
            model.checkpointing_plan.max_tokens = int(max_length) * int(batch_size)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.iter < self.refit_iters and self._model(runner) and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = self._model(runner)
        if model is None or runner.iter >= self.refit_iters or not torch.cuda.is_available():
            return
        peak = torch.cuda.max_memory_allocated()
        plan = model.checkpointing_plan
        if runner.iter == 0 or plan.calibrating or peak > plan.budget_bytes:
            model.fit_activation_checkpointing(peak, torch.cuda.memory_allocated())
        if runner.iter == self.refit_iters - 1:
            model.checkpointing_plan.measuring = False  # settled: no more readings per step
