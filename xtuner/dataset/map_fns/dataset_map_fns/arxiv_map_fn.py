"""Map fn for arXiv abstract → title generation (the ``arxiv_gentitle`` configs)."""
from typing import Any

from xtuner.utils.templates import SYSTEM_TEMPLATE

from ._single_turn import single_turn


def arxiv_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{abstract, title}`` to a one-turn conversation asking for the paper's title.

    Args:
        example: One arXiv metadata record.

    Returns:
        ``{"conversation": [turn]}`` with ``SYSTEM_TEMPLATE.arxiv_gentile`` as system prompt.
    """
    return single_turn(example["abstract"], example["title"], system=SYSTEM_TEMPLATE.arxiv_gentile)
