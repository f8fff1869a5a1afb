"""``memory_budget`` in a config (``xtuner train CFG --memory-budget 8GB``): plan the run's GPU
memory once the model is built, before the optimizer is (see :mod:`xtuner.model.memory_budget`).

The plan needs the built model (its weights and trained parameters) and decides the optimizer
(8-bit states or not), so it runs in mmengine's optimizer-wrapper constructor, the one step that
sees both: :func:`apply_memory_budget` points ``optim_wrapper.constructor`` at
:class:`MemoryBudgetOptimWrapperConstructor` and hands it the budget and the largest
micro-batch's tokens.
"""
from __future__ import annotations

import logging
import os

import torch
from mmengine import print_log
from mmengine.config import Config, ConfigDict
from mmengine.optim import DefaultOptimWrapperConstructor

from xtuner.engine.config import config_max_length, type_name
from xtuner.utils.errors import ConfigError

__all__ = ["DEVICE_BUDGET", "PLANNED_MODELS", "MemoryBudgetOptimWrapperConstructor",
           "apply_memory_budget", "device_budget"]

# Without a memory_budget, a run on a GPU plans to the GPU it has.
DEVICE_BUDGET = "device"
# The models the estimate covers; a vision tower, an encoder or a reward head is not in it.
PLANNED_MODELS = ("SupervisedFinetune", "DPO", "ORPO")
_PREFERENCE_MODELS = ("DPO", "ORPO")


def device_budget() -> int:
    """What this process may allocate on its GPU: the free memory plus what torch already
    holds (so the CUDA context and other processes are left out), capped by the share
    ``torch.cuda.set_per_process_memory_fraction`` allows; in a distributed run, the least
    of all ranks."""
    device = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(device)
    usable = free + torch.cuda.memory_reserved(device)
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    if fraction is not None:
        usable = min(usable, int(total * fraction(device)))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Every rank must take the same plan (the same optimizer): plan to the smallest GPU.
        smallest = torch.tensor([usable], dtype=torch.int64, device=f"cuda:{device}")
        torch.distributed.all_reduce(smallest, op=torch.distributed.ReduceOp.MIN)
        usable = int(smallest.item())
    return usable


_PAGED_8BIT = "PagedAdamW8bit"
_STATE_KEYS = ("lr", "betas", "eps", "weight_decay")


class MemoryBudgetOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, after planning the model's memory to a budget.

    Args:
        optim_wrapper_cfg: the ``optim_wrapper`` config; its ``memory_budget`` entry
            (``dict(budget='8GB', tokens=2048)``) is taken out here.
        paramwise_cfg: as mmengine's.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.memory_budget = dict(optim_wrapper_cfg.pop("memory_budget"))
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model):
        from xtuner.model.memory_budget import (
            MemorySizes,
            apply_memory_plan,
            available_levers,
            plan_memory,
        )
        from xtuner.model.utils import unwrap_model

        inner = unwrap_model(model)
        budget = self.memory_budget["budget"]
        by_default = budget == DEVICE_BUDGET
        if not hasattr(inner, "checkpointing_plan"):
            if by_default:
                return super().__call__(model)
            raise ConfigError(f"memory_budget: {type(inner).__name__} cannot plan its memory; "
                              f"it works with {', '.join(PLANNED_MODELS)} models (remove "
                              "memory_budget)")
        optimizer = self.optimizer_cfg
        try:
            # device_budget() is bytes; a bare number in a config is GiB.
            plan = plan_memory(MemorySizes.of(inner), self.memory_budget["tokens"],
                               f"{device_budget()}B" if by_default else budget,
                               available_levers(inner, type_name(optimizer.get("type"))))
        except ConfigError as exc:
            if not by_default:
                raise
            # Not asked for: say what would not fit, and let the run try as configured.
            print_log(f"{exc}; training as configured", logger="current",
                      level=logging.WARNING)
            return super().__call__(model)
        if plan.levers or not by_default:
            apply_memory_plan(inner, plan)
        if "optimizer_8bit" in plan.levers:
            # Same hyper-parameters; the fused/foreach switches are torch's, not bitsandbytes'.
            self.optimizer_cfg = {"type": _PAGED_8BIT,
                                  **{k: optimizer[k] for k in _STATE_KEYS if k in optimizer}}
        return super().__call__(model)


def apply_memory_budget(cfg: Config, budget=None) -> None:
    """Plan the run of ``cfg`` to ``budget`` (or ``cfg.memory_budget``). Without either, a
    run of one of :data:`PLANNED_MODELS` on one GPU plans to what it may allocate there
    (:func:`device_budget`), which changes nothing when the run fits as configured.

    Raises:
        ConfigError: unreadable budget, a config the plan cannot drive, or DeepSpeed (which
            builds its own optimizer and partitions memory itself).
    """
    from xtuner.model.checkpointing import parse_memory

    budget = budget if budget is not None else cfg.get("memory_budget")
    if budget is None:
        if _plans_by_default(cfg):
            _wire(cfg, DEVICE_BUDGET)
        return
    try:
        parse_memory(budget)
    except ValueError as exc:
        raise ConfigError(f"memory_budget: {exc}") from None
    cfg.memory_budget = budget
    if cfg.get("strategy") is not None or type_name(cfg.get("runner_type")) == "FlexibleRunner":
        raise ConfigError("memory_budget does not work with --deepspeed (DeepSpeed builds its "
                          "own optimizer); use ZeRO's offload settings, or drop --deepspeed")
    model = cfg.get("model") or {}
    kind = type_name(model.get("type"))
    if kind not in PLANNED_MODELS:
        raise ConfigError(f"memory_budget plans {', '.join(PLANNED_MODELS)} runs; this config "
                          f"trains {kind or 'no model'}: remove memory_budget / "
                          "--memory-budget")
    wrapper = cfg.optim_wrapper
    if wrapper.get("constructor") not in (None, "DefaultOptimWrapperConstructor",
                                          MemoryBudgetOptimWrapperConstructor):
        raise ConfigError(f"memory_budget: optim_wrapper.constructor is already "
                          f"{wrapper.constructor!r}; remove one of the two")
    if not config_max_length(cfg):
        raise ConfigError("memory_budget: the config sets no max_length to plan for")
    _wire(cfg, budget)
    # Fragmentation costs hundreds of MiB near a budget; set before CUDA starts.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def _plans_by_default(cfg: Config) -> bool:
    """A SupervisedFinetune run on one GPU without DeepSpeed plans to the GPU's memory, so a
    QLoRA config that would not fit an 8 GB card as written still trains on one."""
    wrapper = cfg.get("optim_wrapper") or {}
    return (torch.cuda.is_available() and cfg.get("strategy") is None
            and type_name((cfg.get("model") or {}).get("type")) in PLANNED_MODELS
            and wrapper.get("constructor") in (None, "DefaultOptimWrapperConstructor")
            and bool(config_max_length(cfg)))


def _row_tokens(cfg: Config) -> int:
    """Tokens of one row of the largest micro-batch: ``max_length``, or for preference
    training a packed row of pairs (``max_packed_length``) or a pair's chosen and rejected
    sequences side by side."""
    if type_name((cfg.get("model") or {}).get("type")) not in _PREFERENCE_MODELS:
        return int(config_max_length(cfg))
    dataset = (cfg.get("train_dataloader") or {}).get("dataset") or {}
    packed = dataset.get("max_packed_length") if dataset.get("use_varlen_attn") else None
    return int(packed) if isinstance(packed, int) else 2 * int(config_max_length(cfg))


def _wire(cfg: Config, budget) -> None:
    batch = (cfg.get("train_dataloader") or {}).get("batch_size") or 1
    # Under sequence parallelism each GPU runs 1/N of a row's tokens.
    shards = int(cfg.get("sequence_parallel_size") or 1)
    wrapper = cfg.optim_wrapper
    wrapper.constructor = MemoryBudgetOptimWrapperConstructor
    wrapper.memory_budget = ConfigDict(
        budget=budget, tokens=-(-_row_tokens(cfg) * int(batch) // shards))
