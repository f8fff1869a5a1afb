"""Helpers for tests and the offline demo: tiny tokenizers and models built locally.

Importing this package pulls in ``torch``, ``tokenizers`` and ``transformers``; production code
should not import it.
"""

from .tiny_models import (
    CHATML_TEMPLATE,
    DEFAULT_CORPUS,
    SUPPORTED_ARCHS,
    build_tiny_llm,
    tiny_llm_and_tokenizer,
    train_tiny_tokenizer,
)

__all__ = [
    "CHATML_TEMPLATE",
    "DEFAULT_CORPUS",
    "SUPPORTED_ARCHS",
    "build_tiny_llm",
    "tiny_llm_and_tokenizer",
    "train_tiny_tokenizer",
]
