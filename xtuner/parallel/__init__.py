"""Parallelism beyond data parallel (v0 import path ``xtuner.parallel``)."""
