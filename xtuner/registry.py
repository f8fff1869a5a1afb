"""mmengine registries used by xtuner configs.

``BUILDER`` builds any ``dict(type=callable, ...)`` found in a config (datasets, tokenizers,
models); ``MAP_FUNC`` keeps dataset map functions by name so that a config holding a plain
function can be dumped and reloaded (v0's behaviour).
"""
from mmengine.registry import Registry

__all__ = ["BUILDER", "MAP_FUNC"]

BUILDER = Registry("builder")
MAP_FUNC = Registry("map_fn")
