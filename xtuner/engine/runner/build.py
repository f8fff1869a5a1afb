"""Build the mmengine runner for a prepared config."""
from __future__ import annotations

from mmengine.config import Config

__all__ = ["build_runner"]


def build_runner(cfg: Config):
    """``FlexibleRunner`` when the config has a strategy (DeepSpeed), else ``Runner``."""
    if cfg.get("runner_type") == "FlexibleRunner" or cfg.get("strategy") is not None:
        from .runner import FlexibleRunner

        cfg.pop("runner_type", None)
        return FlexibleRunner.from_cfg(cfg)
    from .runner import Runner

    return Runner.from_cfg(cfg)
