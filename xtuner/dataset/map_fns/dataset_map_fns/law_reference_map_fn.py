"""Map fn for the law-reference Q&A data (``question``/``answer`` columns)."""
from typing import Any

from xtuner.utils.templates import SYSTEM_TEMPLATE

from ._single_turn import single_turn


def law_reference_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{question, answer}`` to a one-turn conversation with the (Chinese) lawyer prompt.

    Args:
        example: One record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return single_turn(example["question"], example["answer"], system=SYSTEM_TEMPLATE.lawyer)
