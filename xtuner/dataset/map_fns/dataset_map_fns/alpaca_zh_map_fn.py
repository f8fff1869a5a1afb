"""Map fn for the Chinese Alpaca translation (``silk-road/alpaca-data-gpt4-chinese``)."""
from typing import Any

from ._single_turn import single_turn


def alpaca_zh_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{instruction_zh, input_zh, output_zh}`` to a one-turn conversation.

    Same layout as :func:`alpaca_map_fn` (``instruction\\ninput``, no system prompt), but
    without the ``<nooutput>`` filter, as in v0.

    Args:
        example: One record with the ``*_zh`` columns.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return single_turn(f"{example['instruction_zh']}\n{example['input_zh']}", example["output_zh"])
