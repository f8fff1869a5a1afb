"""Map fn for medical Q&A (``shibing624/medical`` finetune split)."""
from typing import Any

from xtuner.utils.templates import SYSTEM_TEMPLATE

from ._single_turn import single_turn


def medical_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{instruction, input, output}`` to a one-turn conversation with the doctor prompt.

    The input is ``f"{instruction}\\n{input}"`` even when ``input`` is empty, as in v0.

    Args:
        example: One record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return single_turn(
        f"{example['instruction']}\n{example['input']}", example["output"],
        system=SYSTEM_TEMPLATE.medical,
    )
