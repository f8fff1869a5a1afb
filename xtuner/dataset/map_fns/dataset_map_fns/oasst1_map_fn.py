"""Map fn for OpenAssistant Guanaco (``timdettmers/openassistant-guanaco``)."""
from typing import Any


def oasst1_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    r"""Split ``"### Human: ... ### Assistant: ..."`` text into a multi-turn conversation.

    As in v0: the text is split on ``"###"``; pieces starting with ``"Human:"`` or
    ``"Assistant:"`` (after stripping) keep their stripped remainder, any other piece is
    dropped. The kept pieces are paired in order, (1st, 2nd), (3rd, 4th), ... without checking
    who said what, and an odd last piece (a question with no answer) is dropped.

    Example::

        "### Human: Hi### Assistant: Hello!### Human: Bye"
        -> [{"input": "Hi", "output": "Hello!"}]

    Args:
        example: One record with a ``text`` column.

    Returns:
        ``{"conversation": [{"input", "output"}, ...]}``.
    """
    utterances = []
    for piece in example["text"].strip().split("###"):
        piece = piece.strip()
        for speaker in ("Human:", "Assistant:"):
            if piece.startswith(speaker):
                utterances.append(piece[len(speaker):].strip())
                break
    # An unanswered final question carries no loss, so it is dropped.
    if len(utterances) % 2:
        utterances.pop()
    return {
        "conversation": [
            {"input": utterances[i], "output": utterances[i + 1]}
            for i in range(0, len(utterances), 2)
        ]
    }
