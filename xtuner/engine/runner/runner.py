"""xtuner's runners: mmengine's plain ``Runner`` and its ``FlexibleRunner`` (DeepSpeed), with
the checkpoint's seed restored before anything random is built when resuming, and the
process group they join taken down before the interpreter exits."""
from __future__ import annotations

import atexit
import logging

from mmengine import print_log
from mmengine.runner import FlexibleRunner as MMEngineFlexibleRunner
from mmengine.runner import Runner as MMEngineRunner
from mmengine.runner.checkpoint import find_latest_checkpoint

from .schedulers import drop_empty_schedulers

__all__ = ["Runner", "FlexibleRunner"]


def _destroy_process_group() -> None:
    import gc

    import torch.distributed as dist

    from xtuner.parallel.sequence import init_sequence_parallel

    if dist.is_available() and dist.is_initialized():
        init_sequence_parallel(1)  # drops this module's references to the subgroups
        dist.destroy_process_group()
        # A finished run's DDP wrapper is garbage in a reference cycle that still holds the
        # group: collected now, the group is freed while Python is whole.
        gc.collect()


def destroy_process_group_at_exit() -> None:
    """Destroy the process groups when the interpreter exits, while it is still whole.
    mmengine never destroys them, and a gloo group left to interpreter finalization can
    abort the process (SIGABRT, "terminate called without an active exception") as its
    worker threads release tensors after Python is gone; torch also warns about a NCCL
    group left so. Registered once, however many runners a process builds."""
    atexit.unregister(_destroy_process_group)
    atexit.register(_destroy_process_group)


class _ExactResumeMixin:
    """Resume with the checkpoint's seed in force *before* the data loader is built.

    mmengine restores the seed only after building the train loop, so the sampler of a run
    with ``randomness.seed=None`` shuffles with a fresh seed and the resumed run sees other
    batches than the interrupted one (its ``FlexibleRunner`` does not restore it at all).
    """

    def _checkpoint_to_resume(self) -> str | None:
        """The checkpoint ``load_or_resume`` will resume from (mmengine's rule), or None."""
        if not self._resume:
            return None
        if isinstance(self._resume, str):
            return self._resume
        if self._load_from is not None:
            return self._load_from
        return find_latest_checkpoint(self.work_dir)

    def train(self):
        path = self._checkpoint_to_resume()
        if path is not None:
            from xtuner.engine.resume_state import check_resume_checkpoint
            from xtuner.model.utils import unwrap_model

            seed = check_resume_checkpoint(path, unwrap_model(self.model)).get("seed")
            if seed is not None and seed != self.seed:
                self._restore_seed(seed)
        elif self._resume and self._load_from is None:
            # mmengine would log "Auto resumed from the latest checkpoint None".
            self._resume = False
            print_log(f"--resume auto: no checkpoint in {self.work_dir} yet, starting from "
                      "scratch", logger="current", level=logging.WARNING)
        return super().train()


class Runner(_ExactResumeMixin, MMEngineRunner):
    """mmengine's ``Runner`` that resumes exactly (see :class:`_ExactResumeMixin`) and skips
    LR schedulers lasting no iteration, whatever the train loop (so a small dataset does not
    crash a config with an epoch-based warmup)."""

    def _restore_seed(self, seed: int) -> None:
        self._randomness_cfg.update(seed=seed)
        self.set_randomness(**self._randomness_cfg)

    def setup_env(self, env_cfg):
        """mmengine's distributed set-up calls ``torch.cuda.set_device``, which a CPU build
        of torch lacks: without a GPU, the processes join a gloo group first (mmengine then
        keeps it). Then the sequence-parallel groups are created from the config's
        top-level ``sequence_parallel_size``, before the model and sampler read them."""
        import torch
        import torch.distributed as dist

        if self._launcher != "none" and not torch.cuda.is_available() \
                and not dist.is_initialized():
            dist.init_process_group(backend="gloo")
        super().setup_env(env_cfg)
        if self.distributed:
            destroy_process_group_at_exit()
        from xtuner.parallel.sequence import init_sequence_parallel

        init_sequence_parallel(self.cfg.get("sequence_parallel_size", 1))

    def wrap_model(self, model_wrapper_cfg, model):
        """mmengine always gives DDP a CUDA device id, which DDP refuses for a model on the
        CPU: several CPU processes (gloo) get DDP without one. DDP asked to find unused
        parameters gets a model that recomputes with the non-reentrant checkpoint."""
        from mmengine.device import get_device

        # mmengine reads the top-level key only when no model_wrapper_cfg is given
        find_unused = (model_wrapper_cfg.get("find_unused_parameters", False)
                       if model_wrapper_cfg is not None
                       else self.cfg.get("find_unused_parameters", False))
        if self.distributed and find_unused and getattr(model, "reentrant_checkpointing", False):
            model.use_non_reentrant_checkpointing()
            if model.is_checkpointing_activations:
                print_log("find_unused_parameters=True: activation checkpointing recomputes "
                          "with torch's non-reentrant checkpoint (DDP cannot follow the "
                          "reentrant one)", logger="current")

        if not (self.distributed and model_wrapper_cfg is None and get_device() == "cpu"):
            return super().wrap_model(model_wrapper_cfg, model)
        from mmengine.model import MMDistributedDataParallel

        return MMDistributedDataParallel(
            module=model.to("cpu"), device_ids=None, broadcast_buffers=False,
            find_unused_parameters=self.cfg.get("find_unused_parameters", False))

    def build_param_scheduler(self, scheduler):
        if isinstance(scheduler, list) and self._train_loop is not None:
            self.param_schedulers = scheduler
            drop_empty_schedulers(self, len(self.train_dataloader))
            scheduler = self.param_schedulers
        return super().build_param_scheduler(scheduler)


class FlexibleRunner(_ExactResumeMixin, MMEngineFlexibleRunner):
    """mmengine's ``FlexibleRunner`` (used with DeepSpeed) that resumes exactly. Its strategy
    creates the sequence-parallel groups; a config whose top-level ``sequence_parallel_size``
    the strategy did not get is refused rather than run without sequence parallelism."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # the strategy joins the process group here
        if self.distributed:
            destroy_process_group_at_exit()
        from xtuner.parallel.sequence import get_sequence_parallel_world_size
        from xtuner.utils.errors import ConfigError

        wanted = self.cfg.get("sequence_parallel_size", 1)
        if wanted != get_sequence_parallel_world_size():
            raise ConfigError(f"sequence_parallel_size={wanted} but the strategy set up "
                              f"{get_sequence_parallel_world_size()}: give the strategy "
                              f"sequence_parallel_size={wanted} too (xtuner train --deepspeed "
                              "does), or drop one of them")

    def _restore_seed(self, seed: int) -> None:
        self.strategy._randomness.update(seed=seed)
        self.strategy._set_randomness(**self.strategy._randomness)
