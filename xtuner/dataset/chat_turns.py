"""Cut a chat rendered by a chat template into the pieces the loss trains and those it skips."""
from __future__ import annotations

from collections.abc import Callable

from xtuner.utils.errors import ConfigError, DataError

__all__ = ["assistant_segments", "record_messages"]


def record_messages(record) -> list[dict]:
    """The record's ``messages``, checked: a non-empty list of dicts that have a ``role``.

    Raises:
        DataError: a record of another shape.
    """
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DataError("expected a record with a non-empty 'messages' list")
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise DataError(f"a message must be a dict with 'role' and 'content', got "
                            f"{str(message)[:60]}")
    return messages


def assistant_segments(render: Callable[..., str], messages: list[dict]
                       ) -> list[tuple[str, bool]]:
    """The rendered conversation cut into ``(text, trained)`` pieces: each assistant turn is
    what the template adds after the generation prompt before it.

    Args:
        render: ``render(messages, add_generation_prompt=False) -> str`` (a tokenizer's or
            processor's ``apply_chat_template`` with ``tokenize=False``).
        messages: the conversation.

    Raises:
        ConfigError: the template rewrites earlier turns when a turn is added, so the pieces
            cannot be told apart.
    """
    segments, done = [], ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(messages[:i], add_generation_prompt=True)
        full = render(messages[:i + 1])
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise ConfigError("the chat template does not render a conversation as the "
                              "concatenation of its turns (it rewrites earlier turns); "
                              "pass chat_template= with one that does")
        segments += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    rest = render(messages)
    segments.append((rest[len(done):], False))
    return [(text, trained) for text, trained in segments if text]
