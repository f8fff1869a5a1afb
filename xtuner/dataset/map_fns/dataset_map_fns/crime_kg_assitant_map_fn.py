"""Map fn for the CrimeKgAssitant legal Q&A data (v0's file and function name, typo included)."""
from typing import Any

from xtuner.utils.templates import SYSTEM_TEMPLATE

from ._single_turn import single_turn


def crime_kg_assitant_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{input, output}`` to a one-turn conversation with the (Chinese) lawyer prompt.

    Args:
        example: One record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return single_turn(example["input"], example["output"], system=SYSTEM_TEMPLATE.lawyer)
