"""Hooks of the Trainer: the learning-rate schedule counted in optimizer steps, the
EncoderLLM export, and throughput for models whose config nests the LLM's."""
from __future__ import annotations

import math
import os.path as osp

from mmengine.hooks import Hook, ParamSchedulerHook

from xtuner.engine.hooks import ThroughputHook

__all__ = ["EncoderLLMExportHook", "NestedConfigThroughputHook", "OptimStepSchedulerHook"]


class NestedConfigThroughputHook(ThroughputHook):
    """:class:`~xtuner.engine.hooks.ThroughputHook` for a model whose config holds the
    language model's in a sub-config (image-text models: ``config.text_config``); tokens
    and FLOPs count the language model (the vision tower's work is left out)."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._config is not None and hasattr(self._config, "get_text_config"):
            self._config = self._config.get_text_config()


class OptimStepSchedulerHook(ParamSchedulerHook):
    """Build the schedulers for the run's optimizer steps and step them once per optimizer
    step.

    mmengine's own hook steps every iteration (micro-batch), so under gradient accumulation
    the learning rate an optimizer step uses would depend on the accumulation count, and a
    run on N processes would not match one process on the same global batch. Here each
    scheduler is given as fractions of the run (``begin``/``end`` in [0, 1]) and built in
    ``before_run`` (before a resume restores its state) over
    ``ceil(max_iters / accumulative_counts)`` steps.

    Args:
        schedulers: dicts ``type=<mmengine scheduler>, begin=<fraction>, end=<fraction>,
            **kwargs``.
        accumulative_counts: micro-batches per optimizer step.
    """

    def __init__(self, schedulers: list[dict], accumulative_counts: int = 1):
        self.schedulers = [dict(s) for s in schedulers]
        self.accumulative_counts = accumulative_counts

    def before_run(self, runner) -> None:
        from xtuner.engine.config import resolve_type

        total = math.ceil(runner.max_iters / self.accumulative_counts)
        built = []
        for spec in self.schedulers:
            spec = dict(spec)
            cls = resolve_type(spec.pop("type"))  # a dotted name once the config is dumped
            begin = int(round(spec.pop("begin") * total))
            end = max(begin + 1, int(round(spec.pop("end") * total)))
            built.append(cls(runner.optim_wrapper, begin=begin, end=end, by_epoch=False,
                             **spec))
        runner.param_schedulers = built

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        wrapper = runner.optim_wrapper
        stepped = (wrapper.should_update() if hasattr(wrapper, "should_update")
                   else (runner.iter + 1) % self.accumulative_counts == 0)
        if stepped:
            super().after_train_iter(runner, batch_idx, data_batch, outputs)


class EncoderLLMExportHook(Hook):
    """After training, write an :class:`~xtuner.model.EncoderLLM` as one Hugging Face folder
    (``WORK_DIR/hf_model``, :meth:`EncoderLLM.save_hf`: LLM, encoder and projector), which
    ``EncoderLLM.from_hf`` loads. (``HFCheckpointHook`` writes the LLM only.)"""

    priority = 95

    def after_run(self, runner) -> None:
        from mmengine.dist import is_main_process
        from mmengine.model import is_model_wrapper

        if not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        out = model.save_hf(osp.join(runner.work_dir, "hf_model"))
        runner.logger.info(f"Saved the Hugging Face model to {out}")
