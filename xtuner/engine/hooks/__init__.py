"""Training hooks (v0 import path: ``xtuner.engine.hooks``)."""
from .activation_checkpointing_hook import ActivationCheckpointingHook
from .checkpoint_hook import CheckpointHook
from .dataset_info_hook import DatasetInfoHook
from .evaluate_chat_hook import EvaluateChatHook
from .hf_checkpoint_hook import HFCheckpointHook
from .throughput_hook import ThroughputHook
from .varlen_attn_args_to_messagehub_hook import VarlenAttnArgsToMessageHubHook

__all__ = [
    "ActivationCheckpointingHook",
    "CheckpointHook",
    "DatasetInfoHook",
    "EvaluateChatHook",
    "HFCheckpointHook",
    "ThroughputHook",
    "VarlenAttnArgsToMessageHubHook",
]
