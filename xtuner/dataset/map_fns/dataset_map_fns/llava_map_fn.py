"""Map fns for LLaVA's ShareGPT-style ``conversations`` (pre-training and instruction tuning)."""
from typing import Any

from xtuner.utils.constants import DEFAULT_IMAGE_TOKEN
from xtuner.utils.errors import DataError


def _skip_leading_gpt(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop ``gpt`` messages before the first ``human`` one: they answer nothing."""
    messages = list(messages)
    while messages and messages[0]["from"] == "gpt":
        messages.pop(0)
    return messages


def _unknown_speaker(fn_name: str, speaker: Any) -> DataError:
    return DataError(
        f"{fn_name}: unknown speaker {speaker!r} in 'conversations'; expected 'human' or 'gpt'"
    )


def llava_image_only_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map a LLaVA record to turns whose input is only the image token (alignment pre-training).

    Each ``human`` message must contain ``<image>``; its text is discarded and replaced by a
    single ``<image>`` (consecutive ``human`` messages give ``<image><image>``). Each ``gpt``
    message closes a turn; leading ``gpt`` and trailing ``human`` messages are dropped.

    Args:
        example: One LLaVA record with a ``conversations`` list.

    Returns:
        ``{"conversation": [{"input", "output"}, ...]}``.

    Raises:
        DataError: A ``human`` message has no ``<image>`` (v0 asserted), or an unknown speaker.
    """
    conversation = []
    pending_input = ""
    for msg in _skip_leading_gpt(example["conversations"]):
        if msg["from"] == "human":
            if DEFAULT_IMAGE_TOKEN not in msg["value"]:
                raise DataError(
                    "llava_image_only_map_fn: every 'human' message must contain "
                    f"{DEFAULT_IMAGE_TOKEN!r}, got {msg['value'][:80]!r}; use llava_map_fn for "
                    "text turns"
                )
            pending_input += DEFAULT_IMAGE_TOKEN
        elif msg["from"] == "gpt":
            conversation.append({"input": pending_input, "output": msg["value"]})
            pending_input = ""
        else:
            raise _unknown_speaker("llava_image_only_map_fn", msg["from"])
    return {"conversation": conversation}


def llava_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map a LLaVA record to a multi-turn conversation with the image token up front.

    A ``human`` message containing ``<image>`` has every ``<image>`` removed and a single
    ``"<image>\\n"`` put before the stripped text, so the image always precedes the question
    (LLaVA data puts it before or after), as in v0. Beyond v0, a record whose ``image`` is a
    list (several images) keeps one ``"<image>\\n"`` per ``<image>`` of the message, in
    order. Otherwise the ShareGPT rules of
    :func:`~.wizardlm_map_fn` apply: leading ``gpt`` skipped, consecutive ``human`` messages
    concatenated, trailing ``human`` dropped. Unlike v0, the input record is not modified.

    Args:
        example: One LLaVA record with a ``conversations`` list.

    Returns:
        ``{"conversation": [{"input", "output"}, ...]}``.

    Raises:
        DataError: A message's ``from`` is neither ``human`` nor ``gpt``.
    """
    conversation = []
    pending_input = ""
    several_images = isinstance(example.get("image"), (list, tuple))
    for msg in _skip_leading_gpt(example["conversations"]):
        if msg["from"] == "human":
            value = msg["value"]
            images = value.count(DEFAULT_IMAGE_TOKEN)
            if images:
                if not several_images:
                    images = 1  # v0: one image per record, whatever the text repeats
                text = value.replace(DEFAULT_IMAGE_TOKEN, "").strip()
                value = (f"{DEFAULT_IMAGE_TOKEN}\n" * images + text).strip()
            pending_input += value
        elif msg["from"] == "gpt":
            conversation.append({"input": pending_input, "output": msg["value"]})
            pending_input = ""
        else:
            raise _unknown_speaker("llava_map_fn", msg["from"])
    return {"conversation": conversation}
