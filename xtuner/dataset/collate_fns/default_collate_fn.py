"""Batch samples for :class:`~xtuner.model.SupervisedFinetune` (XTuner v0's signature)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from xtuner.utils.constants import DEFAULT_PAD_TOKEN_INDEX, IGNORE_INDEX

__all__ = ["default_collate_fn"]


def _tensor(values) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.long)


def _sample_labels(row: dict) -> torch.Tensor:
    """The row's labels with the first label of every sample after the first ignored.

    The model predicts label ``t`` from position ``t - 1``, so in a row of several samples
    the first label of a sample would be predicted from the last token of the sample before
    it: a target across a sample boundary (trained whenever that token is trainable, as in
    pre-training text or with tokenizers that add no BOS). As transformers'
    ``DataCollatorWithFlattening`` does, it is ignored; a sample alone never has a target
    there either, so each sample's loss is the same as when it runs alone.
    """
    labels = _tensor(row["labels"])
    if "cumulative_len" not in row:
        return labels
    starts = _tensor(row["cumulative_len"])[1:-1]
    if len(starts):
        labels = labels.clone()
        labels[starts] = IGNORE_INDEX
    return labels


def _varlen_batch(instances: Sequence[dict]) -> dict:
    """Concatenate the rows into one row: no padding at all, and samples stay separate.

    Each instance is a packed row with per-sample ``position_ids`` (restarting at 0) and
    ``cumulative_len``; batch size > 1 simply means a longer row. The first label of every
    row after the first is ignored, for the reason given in :func:`_sample_labels`.
    """
    input_ids, labels, positions, bounds = [], [], [], [0]
    for row in instances:
        ids = _tensor(row["input_ids"])
        input_ids.append(ids)
        row_labels = _sample_labels(row)
        if bounds[-1] and len(row_labels):
            row_labels = row_labels.clone()
            row_labels[0] = IGNORE_INDEX
        labels.append(row_labels)
        if "position_ids" in row:
            positions.append(_tensor(row["position_ids"]))
            offsets = _tensor(row["cumulative_len"])[1:] + bounds[-1]
            bounds.extend(offsets.tolist())
        else:  # an unpacked sample is its own sequence
            positions.append(torch.arange(len(ids)))
            bounds.append(bounds[-1] + len(ids))
    cu_seqlens = torch.tensor(bounds, dtype=torch.int32)
    return {
        "input_ids": torch.cat(input_ids)[None],
        "labels": torch.cat(labels)[None],
        "position_ids": torch.cat(positions)[None],
        "cumulative_len": [cu_seqlens],
        "max_seqlen": int((cu_seqlens[1:] - cu_seqlens[:-1]).max()),
    }


def _images(instances: Sequence[dict]) -> torch.Tensor | None:
    """Every instance's images in order, ``(images, C, H, W)``: the i-th image belongs to
    the i-th image placeholder of the batch. None for a text-only batch."""
    images = [torch.as_tensor(x["pixel_values"]) for x in instances if "pixel_values" in x]
    images = [x[None] if x.dim() == 3 else x for x in images]
    images = [x for x in images if len(x)]
    return torch.cat(images) if images else None


def _padded_batch(instances: Sequence[dict], pad_index: int) -> dict:
    """Right-pad the rows (v0): samples packed in a row attend to each other, but no target
    crosses a sample boundary, and the boundaries stay in ``sample_bounds`` (one tensor per
    row) for losses that weigh samples."""
    input_ids = [_tensor(x["input_ids"]) for x in instances]
    labels = [_sample_labels(x) for x in instances]
    lengths = torch.tensor([len(x) for x in input_ids])
    batch = {
        "input_ids": pad_sequence(input_ids, batch_first=True, padding_value=pad_index),
        "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
    }
    width = batch["input_ids"].shape[1]
    mask = torch.arange(width)[None] < lengths[:, None]
    if not bool(mask.all()):
        batch["attention_mask"] = mask.long()
    batch["position_ids"] = torch.arange(width).expand(len(instances), width).clone()
    if all("cumulative_len" in x for x in instances):
        batch["sample_bounds"] = [_tensor(x["cumulative_len"]) for x in instances]
    return batch


def default_collate_fn(instances: Sequence[dict], pad_index: int | None = None,
                       return_hf_format: bool = False, use_varlen_attn: bool = False) -> dict:
    """Collate tokenized samples or packed rows into model inputs.

    Args:
        instances: dicts with ``input_ids`` and ``labels`` (and, for packed rows,
            ``position_ids`` and ``cumulative_len``; for multimodal samples
            ``pixel_values``, one image per placeholder).
        pad_index: id used to pad ``input_ids``. ``xtuner train`` fills in the tokenizer's pad
            id when the config leaves it unset (v0 always padded with 0).
        return_hf_format: return the plain dict instead of mmengine's
            ``{'data': ..., 'data_samples': None}``.
        use_varlen_attn: concatenate the rows into one row with per-sample ``position_ids``
            and ``cumulative_len`` (so batch size > 1 works and nothing is padded); otherwise
            rows are right-padded and attend causally over the whole row, as in v0.
    """
    if pad_index is None:
        pad_index = DEFAULT_PAD_TOKEN_INDEX
    if use_varlen_attn:
        data = _varlen_batch(instances)
    else:
        data = _padded_batch(instances, pad_index)
    images = _images(instances)
    if images is not None:
        data["pixel_values"] = images
    if return_hf_format:
        return data
    return {"data": data, "data_samples": None}
