"""Map fn for OpenOrca (``Open-Orca/OpenOrca``)."""
from typing import Any


def openorca_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{system_prompt, question, response}`` to a one-turn conversation.

    The record's own system prompt is used (an empty one means "no system" downstream).

    Args:
        example: One OpenOrca record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return {
        "conversation": [
            {
                "system": example["system_prompt"],
                "input": example["question"],
                "output": example["response"],
            }
        ]
    }
