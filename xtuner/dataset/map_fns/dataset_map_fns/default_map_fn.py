"""Map fn for records that already have ``input``/``output`` columns."""
from typing import Any


def default_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{input, output}`` to a one-turn conversation without a system prompt.

    Args:
        example: One record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return {"conversation": [{"input": example["input"], "output": example["output"]}]}
