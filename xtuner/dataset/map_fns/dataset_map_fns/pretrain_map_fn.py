"""Map fn for plain-text (incremental pre-training) data."""
from typing import Any


def pretrain_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map ``{text}`` to one output-only turn.

    The whole stripped text is the (trained) output with an empty input. ``need_eos_token`` is
    ``False`` so documents are not terminated with EOS, matching v0's pre-training configs
    (which use no prompt template, so nothing overrides this flag).

    Args:
        example: One record with a ``text`` column.

    Returns:
        ``{"conversation": [{"input": "", "output": text, "need_eos_token": False}]}``.
    """
    return {
        "conversation": [
            {"input": "", "output": example["text"].strip(), "need_eos_token": False}
        ]
    }
