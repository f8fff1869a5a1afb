"""v0 import path ``xtuner.dataset.utils``: ``encode_fn`` lives in :mod:`.tokenize`."""
from .tokenize import encode_fn

__all__ = ["encode_fn"]
