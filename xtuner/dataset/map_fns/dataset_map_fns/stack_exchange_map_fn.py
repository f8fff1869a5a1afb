"""Map fn for Stack Exchange Q&A (``ArmelR/stack-exchange-instruction``)."""
from typing import Any


def stack_exchange_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{question, response}`` to a one-turn conversation without a system prompt.

    Args:
        example: One record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return {"conversation": [{"input": example["question"], "output": example["response"]}]}
