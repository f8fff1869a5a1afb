"""Training engine: hooks, loops and the DeepSpeed strategy (v0 import path ``xtuner.engine``).

Importing this package is light; the DeepSpeed strategy imports DeepSpeed only when used.
"""
from .hooks import (
    DatasetInfoHook,
    EvaluateChatHook,
    HFCheckpointHook,
    ThroughputHook,
    VarlenAttnArgsToMessageHubHook,
)
from .runner import TrainLoop

__all__ = [
    "DatasetInfoHook",
    "EvaluateChatHook",
    "HFCheckpointHook",
    "ThroughputHook",
    "VarlenAttnArgsToMessageHubHook",
    "TrainLoop",
]
