"""Training strategies for mmengine's ``FlexibleRunner``."""
from .deepspeed import DeepSpeedOptimWrapper, DeepSpeedStrategy

__all__ = ["DeepSpeedOptimWrapper", "DeepSpeedStrategy"]
