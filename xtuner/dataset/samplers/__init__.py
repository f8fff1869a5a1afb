"""Samplers (v0 import path: ``xtuner.dataset.samplers``)."""
from .length_grouped import LengthGroupedSampler, get_length_grouped_indices

__all__ = ["LengthGroupedSampler", "get_length_grouped_indices"]
