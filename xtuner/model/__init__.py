"""Models (v0 import paths: ``from xtuner.model import SupervisedFinetune, LLaVAModel``)."""
from .llava import LLaVAModel
from .sft import SupervisedFinetune

__all__ = ["SupervisedFinetune", "LLaVAModel"]
