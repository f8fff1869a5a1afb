"""xtuner's DeepSpeed strategy for mmengine's ``FlexibleRunner``.

mmengine 0.10.7's ``DeepSpeedStrategy.__init__`` registers DeepSpeed's optimizers by importing
``deepspeed.runtime.fp16.onebit``, which DeepSpeed 0.19 removed; this subclass sets the same
fields itself and registers only the optimizers the installed DeepSpeed has. It also keeps a
``transformers.integrations.HfDeepSpeedConfig`` alive while the model is built, so ZeRO-3
partitions weights as they load and QLoRA picks a quantized storage dtype ZeRO-3 can shard.
Its optimizer wrapper logs each optimizer step's gradient norm, as mmengine's plain wrapper
does.
"""
from __future__ import annotations

import importlib

from mmengine._strategy import BaseStrategy
from mmengine._strategy import DeepSpeedStrategy as MMEngineDeepSpeedStrategy
from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper as MMEngineDeepSpeedOptimWrapper
from mmengine.device import get_device
from mmengine.logging import MessageHub
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS, STRATEGIES

__all__ = ["DeepSpeedOptimWrapper", "DeepSpeedStrategy",
           "register_available_deepspeed_optimizers"]

_DEEPSPEED_OPTIMIZERS = {
    "deepspeed.ops.adam": ("DeepSpeedCPUAdam", "FusedAdam"),
    "deepspeed.ops.lamb": ("FusedLamb",),
    "deepspeed.runtime.fp16.onebit": ("OnebitAdam", "OnebitLamb", "ZeroOneAdam"),
}


def register_available_deepspeed_optimizers() -> list[str]:
    """Register whichever of DeepSpeed's optimizers this DeepSpeed release provides."""
    registered = []
    for module_name, names in _DEEPSPEED_OPTIMIZERS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            optimizer = getattr(module, name, None)
            if optimizer is not None and name not in OPTIMIZERS.module_dict:
                OPTIMIZERS.register_module(module=optimizer)
                registered.append(name)
    return registered


@STRATEGIES.register_module(name="XTunerDeepSpeedStrategy", force=True)
class DeepSpeedStrategy(MMEngineDeepSpeedStrategy):
    """mmengine's DeepSpeed strategy, working with DeepSpeed 0.19 (same arguments).

    Extra argument ``sequence_parallel_size`` (v0's): the sequence-parallel groups are created
    with the distributed environment (see :mod:`xtuner.parallel.sequence`). DeepSpeed itself
    averages gradients over all ranks, as DDP does; the loss scale accounts for it.
    """

    def __init__(self, *, config=None, zero_optimization=None, gradient_clipping=None,
                 fp16=None, inputs_to_half=None, bf16=None, amp=None,
                 activation_checkpointing=None, aio=None, train_micro_batch_size_per_gpu=None,
                 gradient_accumulation_steps=None, steps_per_print=10000000000000,
                 exclude_frozen_parameters=None, sequence_parallel_size=1, **kwargs):
        # read by _setup_env, which BaseStrategy.__init__ calls
        self.sequence_parallel_size = sequence_parallel_size
        # Deliberately not calling MMEngineDeepSpeedStrategy.__init__ (see module docstring);
        # the fields below are the ones it sets.
        BaseStrategy.__init__(self, **kwargs)
        self.config = self._parse_config(config)
        overrides = dict(zero_optimization=zero_optimization,
                         gradient_clipping=gradient_clipping, fp16=fp16, bf16=bf16, amp=amp,
                         activation_checkpointing=activation_checkpointing, aio=aio,
                         train_micro_batch_size_per_gpu=train_micro_batch_size_per_gpu,
                         gradient_accumulation_steps=gradient_accumulation_steps)
        for key, value in overrides.items():
            if value is not None:
                self.config[key] = value
        self.config.setdefault("gradient_accumulation_steps", 1)
        self.config["steps_per_print"] = steps_per_print
        self._inputs_to_half = inputs_to_half
        self.exclude_frozen_parameters = exclude_frozen_parameters
        register_available_deepspeed_optimizers()

        from transformers.integrations import HfDeepSpeedConfig

        # Held for the strategy's lifetime: transformers consults it (weakly referenced)
        # while `from_pretrained` builds the model.
        self._hf_deepspeed_config = HfDeepSpeedConfig(self.config)

    def _setup_env(self, *args, **kwargs):
        super()._setup_env(*args, **kwargs)
        from xtuner.parallel.sequence import init_sequence_parallel

        init_sequence_parallel(self.sequence_parallel_size)

    def resume(self, filename, *, callback=None, **kwargs):
        """mmengine's resume, which ignores ``callback``: calling it lets hooks see the
        loaded checkpoint (``after_load_checkpoint``) as with the plain runner, e.g. to
        restore the random streams of the interrupted run."""
        checkpoint = super().resume(filename, **kwargs)
        if callback is not None:
            callback(checkpoint)
        return checkpoint

    def _wrap_model(self, model):
        wrapper = super()._wrap_model(model)
        # ZeRO-3 partitions parameters without calling `model.to()`, so the data
        # preprocessor would keep moving batches to the CPU.
        if hasattr(model, "data_preprocessor"):
            model.data_preprocessor.to(get_device())
        return wrapper


@OPTIM_WRAPPERS.register_module(name="XTunerDeepSpeedOptimWrapper", force=True)
class DeepSpeedOptimWrapper(MMEngineDeepSpeedOptimWrapper):
    """mmengine's DeepSpeed optimizer wrapper, which also logs ``grad_norm``: the norm of
    each applied optimizer step's gradient, before clipping (DeepSpeed's global norm), under
    the key mmengine's plain wrapper uses."""

    def step(self, **kwargs):
        self.model.step()
        if not self.model.was_step_applied():  # accumulating, or a skipped fp16 step
            return
        norm = self.model.get_global_grad_norm()
        if norm is not None:
            MessageHub.get_current_instance().update_scalar("train/grad_norm", float(norm))
