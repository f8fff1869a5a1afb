"""Map fn for Alpaca-style records (``tatsu-lab/alpaca`` and its cleaned/GPT-4 variants)."""
from typing import Any

from ._single_turn import single_turn


def alpaca_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{instruction, input, output}`` to a one-turn conversation.

    The input is ``f"{instruction}\\n{input}"`` even when ``input`` is empty (v0 keeps the
    trailing newline). There is no system prompt, as in v0: the Alpaca configs pass
    ``SYSTEM_TEMPLATE.alpaca`` only to the evaluation hook, so the training samples never
    contained it.

    Args:
        example: One Alpaca record.

    Returns:
        ``{"conversation": [turn]}``; an empty conversation for records whose output is
        ``"<nooutput>"`` (the dataset's marker for "no answer"), which the pipeline then drops.
    """
    if example.get("output") == "<nooutput>":
        return {"conversation": []}
    return single_turn(f"{example['instruction']}\n{example['input']}", example["output"])
