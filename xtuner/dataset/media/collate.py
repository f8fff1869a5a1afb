"""``media_collate_fn``: :func:`default_collate_fn` plus the batch's media, in order."""
from __future__ import annotations

from collections.abc import Sequence

from ..collate_fns.default_collate_fn import default_collate_fn

__all__ = ["media_collate_fn"]


def media_collate_fn(instances: Sequence[dict], pad_index: int | None = None,
                     return_hf_format: bool = False, use_varlen_attn: bool = False) -> dict:
    """Collate samples (or packed rows) of a :class:`MediaJsonlDataset`.

    The text part is :func:`default_collate_fn`'s (same arguments); ``media`` is the list of
    every instance's media tensors in order, so the i-th media of the batch belongs to its
    i-th media span. ``pad_index`` defaults to 0 as in v0: give the tokenizer's pad id for
    padded batches (varlen batches are never padded).
    """
    data = default_collate_fn(instances, pad_index=pad_index, return_hf_format=True,
                              use_varlen_attn=use_varlen_attn)
    data["media"] = [m for x in instances for m in x.get("media", ())]
    return data if return_hf_format else {"data": data, "data_samples": None}
