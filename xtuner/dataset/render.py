"""Decode tokenized samples for people: trained spans marked, image tokens named.

``render_trained_spans`` gives the same text as the one in
:mod:`xtuner.engine.hooks.dataset_info_hook`; it lives here too so the data tools can use it
without importing the engine (mmengine's hooks take seconds to import).
"""
from __future__ import annotations

from xtuner.utils.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

__all__ = ["decode_with_image_tokens", "render_trained_spans", "render_masked"]


def decode_with_image_tokens(tokenizer, input_ids) -> str:
    """Decode ids, writing ``<image>`` where ``IMAGE_TOKEN_INDEX`` stands."""
    pieces, chunk = [], []
    for token in input_ids:
        if token == IMAGE_TOKEN_INDEX:
            pieces.append(tokenizer.decode(chunk))
            pieces.append("<image>")
            chunk = []
        else:
            chunk.append(abs(int(token)))
    pieces.append(tokenizer.decode(chunk))
    return "".join(pieces)


def _runs(input_ids, labels):
    """``(trained, ids)`` for each run of tokens that are all trained or all untrained."""
    span: list[int] = []
    trained = None
    for token, label in zip(input_ids, labels):
        is_trained = label != IGNORE_INDEX
        if trained is not None and is_trained != trained:
            yield trained, span
            span = []
        span.append(token)
        trained = is_trained
    if span:
        yield trained, span


def render_trained_spans(tokenizer, input_ids, labels, start: str = "[[",
                         end: str = "]]") -> str:
    """Decode a sample with the trained spans wrapped in ``start``/``end`` markers."""
    return "".join(f"{start}{decode_with_image_tokens(tokenizer, ids)}{end}" if trained
                   else decode_with_image_tokens(tokenizer, ids)
                   for trained, ids in _runs(input_ids, labels))


def render_masked(tokenizer, input_ids, labels) -> str:
    """What the loss sees: untrained runs as ``[-100 xN]``, trained text in ``[[ ]]``."""
    return "".join(f"[[{decode_with_image_tokens(tokenizer, ids)}]]" if trained
                   else f"[-100 x{len(ids)}]"
                   for trained, ids in _runs(input_ids, labels))
