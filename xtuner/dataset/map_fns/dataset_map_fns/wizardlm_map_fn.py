"""Map fn for ShareGPT-style ``conversations`` (``WizardLM/WizardLM_evol_instruct_V2_196k``)."""
from typing import Any

from xtuner.utils.errors import DataError


def wizardlm_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``conversations: [{from: human|gpt, value}, ...]`` to a multi-turn conversation.

    As in v0: leading ``gpt`` messages are skipped (nothing to answer), consecutive ``human``
    messages are concatenated with no separator, each ``gpt`` message closes a turn, and a
    trailing ``human`` message without an answer is dropped.

    Args:
        example: One record with a ``conversations`` list.

    Returns:
        ``{"conversation": [{"input", "output"}, ...]}``.

    Raises:
        DataError: A message's ``from`` is neither ``human`` nor ``gpt``.
    """
    messages = list(example["conversations"])
    while messages and messages[0]["from"] == "gpt":
        messages.pop(0)

    conversation = []
    pending_input = ""
    for msg in messages:
        if msg["from"] == "human":
            pending_input += msg["value"]
        elif msg["from"] == "gpt":
            conversation.append({"input": pending_input, "output": msg["value"]})
            pending_input = ""
        else:
            raise DataError(
                f"wizardlm_map_fn: unknown speaker {msg['from']!r} in 'conversations'; "
                "expected 'human' or 'gpt'"
            )
    return {"conversation": conversation}
