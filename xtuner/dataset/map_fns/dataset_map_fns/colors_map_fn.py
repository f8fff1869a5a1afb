"""Map fn for the colour-description dataset (``burkelibbey/colors``)."""
from typing import Any

from xtuner.utils.templates import SYSTEM_TEMPLATE

from ._single_turn import single_turn


def colors_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{description, color}`` to a one-turn conversation with the colorist prompt.

    Descriptions look like ``"Medium Spring Bud: A light, yellowish green ..."``; the input is the
    text after the first ``":"`` (later colons are kept), stripped. A description without a colon
    gives an empty input, as in v0.

    Args:
        example: One record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    _, _, desc = example["description"].partition(":")
    return single_turn(desc.strip(), example["color"], system=SYSTEM_TEMPLATE.colorist)
