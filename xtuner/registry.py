"""mmengine registries used by xtuner configs.

``BUILDER`` builds any ``dict(type=callable, ...)`` found in a config (datasets, tokenizers,
models); ``MAP_FUNC`` keeps dataset map functions by name so that a config holding a plain
function can be dumped and reloaded (v0's behaviour).
"""
from mmengine.registry import Registry, build_from_cfg

__all__ = ["BUILDER", "MAP_FUNC"]


def _build(cfg, registry, default_args=None):
    """mmengine's ``build_from_cfg``; a ``from_pretrained`` dict's model path is checked
    first and the hub's failures become one line (``xtuner.model.utils.pretrained_errors``).

    Every tool builds configs' models and tokenizers through ``BUILDER``: this is the one
    place that sees each ``from_pretrained`` call.
    """
    from xtuner.model.utils import pretrained_errors

    with pretrained_errors(cfg):
        return build_from_cfg(cfg, registry, default_args)


BUILDER = Registry("builder", build_func=_build)
MAP_FUNC = Registry("map_fn")
