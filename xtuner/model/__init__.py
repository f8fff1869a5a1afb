"""Models (v0 import path: ``from xtuner.model import SupervisedFinetune``)."""
from .sft import SupervisedFinetune

__all__ = ["SupervisedFinetune"]
