"""Sequence parallelism (v0 import path ``xtuner.parallel.sequence``).

Only the sampler exists so far, so v0 configs that import it load; sequence parallel sizes
above 1 are refused with a clear error.
"""
from .sampler import SequenceParallelSampler

__all__ = ["SequenceParallelSampler"]
