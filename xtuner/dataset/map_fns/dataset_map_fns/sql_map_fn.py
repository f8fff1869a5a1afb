"""Map fn for text-to-SQL data (``b-mc2/sql-create-context``)."""
from typing import Any

from xtuner.utils.templates import SYSTEM_TEMPLATE

from ._single_turn import single_turn


def sql_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{context, question, answer}`` to a one-turn conversation with the SQL prompt.

    The input is the ``CREATE TABLE`` context, a newline, then the question.

    Args:
        example: One record.

    Returns:
        ``{"conversation": [turn]}``.
    """
    return single_turn(
        f"{example['context']}\n{example['question']}", example["answer"],
        system=SYSTEM_TEMPLATE.sql,
    )
