"""The shape most map fns return: one turn, optionally with a system prompt."""
from typing import Any

__all__ = ["single_turn"]


def single_turn(input: str, output: str,
                system: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{"conversation": [{"system"?, "input", "output"}]}`` (``system`` only when given)."""
    turn: dict[str, Any] = {} if system is None else {"system": system}
    turn.update(input=input, output=output)
    return {"conversation": [turn]}
