"""Map fn for OpenAI chat-format records (``{"messages": [{"role", "content"}, ...]}``)."""
from typing import Any

from xtuner.utils.errors import DataError


def _output_with_loss(msg: dict[str, Any], null_loss_trains: bool) -> bool:
    """Read an assistant message's optional ``loss`` flag (default ``True``).

    v0 parses the value as a string: ``True``/``"true"``/``"True"`` mean trained, anything else
    (``False``, ``"False"``, ``"no"``, ``0``, ``1``) means not trained.

    Deliberate fix: ``None`` counts as "not given" (trained). ``datasets`` fills a missing key
    with ``None`` whenever any message in the file has ``loss``, and v0 then read it as
    ``"None"`` → not trained, silently dropping the loss on every unmarked reply.
    ``null_loss_trains=False`` restores v0's reading.
    """
    loss = msg.get("loss", True)
    if loss is None and null_loss_trains:
        return True
    return str(loss).lower() == "true"


def openai_map_fn(example: dict[str, Any], *,
                  null_loss_trains: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Map OpenAI ``messages`` to a multi-turn conversation.

    As in v0: leading ``assistant`` messages are skipped; a ``system`` message sets the system
    prompt of the next turn only (a later one replaces an earlier one that was not yet used);
    consecutive ``user`` messages are concatenated with no separator; each ``assistant`` message
    closes a turn (``system``, ``input``, ``output``, ``output_with_loss``); trailing ``user`` or
    ``system`` messages are dropped.

    Example::

        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello", "loss": False}]}
        -> [{"system": "Be brief.", "input": "Hi", "output": "Hello",
             "output_with_loss": False}]

    Args:
        example: One record with a ``messages`` list.
        null_loss_trains: ``loss: None`` (what ``datasets`` stores for a message without the
            key once another message has it) trains the reply. ``False`` is v0's reading,
            where it does not; use ``functools.partial(openai_map_fn, null_loss_trains=False)``
            to reproduce a v0 run exactly.

    Returns:
        ``{"conversation": [...]}``.

    Raises:
        DataError: A message's role is not ``system``, ``user`` or ``assistant``.
    """
    messages = list(example["messages"])
    while messages and messages[0]["role"] == "assistant":
        messages.pop(0)

    conversation = []
    system, pending_input = "", ""
    for msg in messages:
        role = msg["role"]
        if role == "system":
            system = msg["content"]
        elif role == "user":
            pending_input += msg["content"]
        elif role == "assistant":
            conversation.append(
                {
                    "system": system,
                    "input": pending_input,
                    "output": msg["content"],
                    "output_with_loss": _output_with_loss(msg, null_loss_trains),
                }
            )
            system, pending_input = "", ""
        else:
            raise DataError(
                f"openai_map_fn: unsupported role {role!r} in 'messages'; expected 'system', "
                "'user' or 'assistant' (tool/function messages are not supported)"
            )
    return {"conversation": conversation}
