"""Map fn for Tiny Codes (``nampdn-ai/tiny-codes``)."""
from typing import Any

from xtuner.utils.templates import SYSTEM_TEMPLATE

from ._single_turn import single_turn


def tiny_codes_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{prompt, response}`` to a one-turn conversation with the coder system prompt.

    Args:
        example: One record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return single_turn(example["prompt"], example["response"], system=SYSTEM_TEMPLATE.coder)
