"""Training strategies for mmengine's ``FlexibleRunner``."""
from .deepspeed import DeepSpeedStrategy

__all__ = ["DeepSpeedStrategy"]
