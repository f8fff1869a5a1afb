"""Keep epoch-based LR schedulers from breaking runs on small datasets."""
from __future__ import annotations

import logging

from mmengine import print_log

__all__ = ["drop_empty_schedulers"]


def drop_empty_schedulers(runner, epoch_length: int) -> None:
    """Drop epoch-based schedulers that round to zero iterations (v0 crashed on small data).

    A warmup of ``0.03 * 3`` epochs over a 20-iteration epoch lasts 1.8 iterations, which
    mmengine rounds to 1; over a 10-iteration epoch it is 0, and mmengine refuses a scheduler
    whose end equals its begin. Such a warmup does nothing anyway, so it is left out with a
    warning. Called before the runner builds its schedulers from ``runner.param_schedulers``.
    """
    schedulers = getattr(runner, "param_schedulers", None)
    if not isinstance(schedulers, list):
        return
    kept = []
    for cfg in schedulers:
        if (isinstance(cfg, dict) and cfg.get("by_epoch", True)
                and cfg.get("convert_to_iter_based") and "end" in cfg):
            begin = int(cfg.get("begin", 0) * epoch_length)
            end = int(cfg["end"] * epoch_length)
            if end <= begin:
                name = getattr(cfg.get("type"), "__name__", cfg.get("type"))
                print_log(f"{name} from epoch {cfg.get('begin', 0)} to {cfg['end']} lasts no "
                          f"iteration with {epoch_length} iterations per epoch; skipping it",
                          logger="current", level=logging.WARNING)
                continue
        kept.append(cfg)
    runner.param_schedulers = kept

