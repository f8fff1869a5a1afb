"""Training engine: hooks, loops and the DeepSpeed strategy (v0 import path ``xtuner.engine``).

The names below are imported on first use (PEP 562), so ``import xtuner.engine.config`` stays
light: mmengine's hooks and optimizers pull in torch, bitsandbytes and DeepSpeed, which a
command that only reads a config (or reports a typo in it) should not wait for.
"""
from importlib import import_module

_EXPORTS = {
    "CheckpointHook": ".hooks",
    "DatasetInfoHook": ".hooks",
    "EvaluateChatHook": ".hooks",
    "HFCheckpointHook": ".hooks",
    "ThroughputHook": ".hooks",
    "VarlenAttnArgsToMessageHubHook": ".hooks",
    "TrainLoop": ".runner",
    "DeepSpeedStrategy": "._strategy",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xtuner.engine' has no attribute '{name}'")
    return getattr(import_module(_EXPORTS[name], __name__), name)
