"""xtuner: config-driven fine-tuning of large language models (XTuner v0 style).

Importing :mod:`xtuner` is cheap and has no side effects; the heavy modules
(:mod:`xtuner.dataset`, :mod:`xtuner.model`, :mod:`xtuner.engine`) are imported by whoever uses
them.
"""
from .version import __version__, version_info

__all__ = ["__version__", "version_info", "cli"]


def cli() -> None:
    """Console entry point (``xtuner``); see :mod:`xtuner.entry_point`."""
    from .entry_point import cli as _cli

    _cli()
