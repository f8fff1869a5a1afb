"""Models (v0 import paths: ``from xtuner.model import SupervisedFinetune, LLaVAModel, DPO, ORPO,
RewardModel``)."""
from .dpo import DPO
from .encoder_llm import EncoderLLM
from .llava import LLaVAModel
from .orpo import ORPO
from .reward import RewardModel
from .sft import SupervisedFinetune

__all__ = ["SupervisedFinetune", "LLaVAModel", "DPO", "ORPO", "RewardModel", "EncoderLLM"]
