"""Map fn for Code Alpaca (``HuggingFaceH4/CodeAlpaca_20K``)."""
from typing import Any

from xtuner.utils.templates import SYSTEM_TEMPLATE

from ._single_turn import single_turn


def code_alpaca_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{prompt, completion}`` to a one-turn conversation with the coder system prompt.

    Args:
        example: One Code Alpaca record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return single_turn(example["prompt"], example["completion"], system=SYSTEM_TEMPLATE.coder)
