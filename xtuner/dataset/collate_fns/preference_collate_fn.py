"""Batch chosen/rejected pairs for ``DPO``, ``ORPO`` and ``RewardModel`` (v0's signature)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from xtuner.utils.constants import DEFAULT_PAD_TOKEN_INDEX, IGNORE_INDEX

__all__ = ["preference_collate_fn"]


def _sequences(instance: dict) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` of each sequence of a pair or of a packed row of pairs, chosen
    before rejected."""
    if "chosen_ids" in instance:
        return [(instance["chosen_ids"], instance["chosen_labels"]),
                (instance["rejected_ids"], instance["rejected_labels"])]
    ids, labels = list(instance["input_ids"]), list(instance["labels"])
    bounds = [int(b) for b in instance["cumulative_len"]]
    return [(ids[s:e], labels[s:e]) for s, e in zip(bounds[:-1], bounds[1:])]


def preference_collate_fn(instances: Sequence[dict], pad_index: int | None = None,
                          return_hf_format: bool = False, use_varlen_attn: bool = False) -> dict:
    """Collate preference pairs (or packed rows of pairs) into model inputs.

    The sequences keep their order, chosen then rejected for each pair: ``[c1, r1, c2, ...]``.

    Args:
        instances: pairs (``chosen_ids``, ``chosen_labels``, ``rejected_ids``,
            ``rejected_labels``) or rows packed by ``build_preference_dataset`` (``input_ids``,
            ``labels``, ``position_ids``, ``cumulative_len``).
        pad_index: the id padding ``input_ids`` (padded positions are masked out by
            ``attention_mask``, so any id works); default v0's 0.
        return_hf_format: return the plain dict instead of mmengine's
            ``{'data': ..., 'data_samples': None}``.
        use_varlen_attn: one row holding every sequence, with ``position_ids`` restarting at 0
            and ``cumulative_len`` (any batch size; nothing padded). Otherwise one
            right-padded row per sequence with an ``attention_mask``.

    Labels are passed through untouched (the models decide which positions are targets).
    """
    if pad_index is None:
        pad_index = DEFAULT_PAD_TOKEN_INDEX
    sequences = [seq for instance in instances for seq in _sequences(instance)]
    ids = [torch.as_tensor(s[0], dtype=torch.long) for s in sequences]
    labels = [torch.as_tensor(s[1], dtype=torch.long) for s in sequences]
    if use_varlen_attn:
        lengths = torch.tensor([len(x) for x in ids])
        bounds = torch.zeros(len(ids) + 1, dtype=torch.int32)
        bounds[1:] = torch.cumsum(lengths, 0)
        data = {
            "input_ids": torch.cat(ids)[None],
            "labels": torch.cat(labels)[None],
            "position_ids": torch.cat([torch.arange(len(x)) for x in ids])[None],
            "cumulative_len": [bounds],
            "max_seqlen": int(lengths.max()),
        }
    else:
        input_ids = pad_sequence(ids, batch_first=True, padding_value=pad_index)
        lengths = torch.tensor([len(x) for x in ids])
        width = input_ids.shape[1]
        data = {
            "input_ids": input_ids,
            "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
            # tokenizers whose pad id is their EOS: the mask cannot come from the ids
            "attention_mask": (torch.arange(width)[None] < lengths[:, None]).long(),
            "position_ids": torch.arange(width).expand(len(ids), width).clone(),
        }
    if return_hf_format:
        return data
    return {"data": data, "data_samples": None}
