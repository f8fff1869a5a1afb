"""Constants, chat templates, paths and errors (v0 import path: ``xtuner.utils``)."""
from .constants import DEFAULT_IMAGE_TOKEN, DEFAULT_PAD_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from .templates import PROMPT_TEMPLATE, SYSTEM_TEMPLATE

__all__ = [
    "IGNORE_INDEX",
    "DEFAULT_PAD_TOKEN_INDEX",
    "DEFAULT_IMAGE_TOKEN",
    "IMAGE_TOKEN_INDEX",
    "PROMPT_TEMPLATE",
    "SYSTEM_TEMPLATE",
]
