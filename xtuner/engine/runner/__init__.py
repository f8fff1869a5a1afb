"""Training loops (v0 import path: ``xtuner.engine.runner``)."""
from .loops import TrainLoop

__all__ = ["TrainLoop"]
