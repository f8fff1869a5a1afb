"""Splice encoder features into a token sequence at placeholder ids (LLaVA-style models).

A tokenized multimodal sample holds one placeholder id (``IMAGE_TOKEN_INDEX``, v0's -200) per
image. The model encodes each image into ``N`` feature vectors; :func:`splice_features`
builds the LLM's ``inputs_embeds`` with the ``N`` vectors in place of each placeholder and
stretches everything aligned with the tokens (labels, attention mask, loss weights) to
match, the image span never trained. It works on padded batches (one sample per row) and on
packed rows (several samples in one row, boundaries in ``cumulative_len``): the boundaries
move by the features spliced before them and positions restart at each sample, so attention
and positions within a packed sample are those of the sample alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from xtuner.utils.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

__all__ = ["SplicedInputs", "splice_features", "count_placeholders"]


@dataclass
class SplicedInputs:
    """The LLM's inputs after splicing (``None`` where the input had none)."""

    inputs_embeds: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    loss_weights: torch.Tensor | None = None
    cumulative_len: torch.Tensor | None = None


def count_placeholders(input_ids: torch.Tensor, placeholder: int = IMAGE_TOKEN_INDEX) -> int:
    """How many features a batch needs (one image per placeholder)."""
    return int((input_ids == placeholder).sum())


def _stretch(values: torch.Tensor, rows, cols, shape, fill) -> torch.Tensor:
    out = torch.full(shape, fill, dtype=values.dtype, device=values.device)
    out[rows, cols] = values
    return out


def splice_features(input_ids: torch.Tensor, features: torch.Tensor, embed_tokens,
                    labels: torch.Tensor | None = None,
                    attention_mask: torch.Tensor | None = None,
                    loss_weights: torch.Tensor | None = None,
                    cumulative_len: torch.Tensor | None = None,
                    placeholder: int = IMAGE_TOKEN_INDEX) -> SplicedInputs:
    """Replace each placeholder of ``input_ids`` by the ``N`` vectors of its image.

    Args:
        input_ids: ``(rows, width)`` token ids with one ``placeholder`` per image.
        features: ``(images, N, hidden)``, the images in the order their placeholders appear
            (row by row, left to right).
        embed_tokens: the LLM's input embedding module.
        labels / attention_mask / loss_weights: aligned with ``input_ids``; stretched with
            the image spans set to ``IGNORE_INDEX`` / 1 / 0.
        cumulative_len: sample boundaries of a packed batch (one row).
        placeholder: the placeholder id.

    Returns:
        :class:`SplicedInputs`; rows are right-padded to the longest spliced row.
    """
    rows, width = input_ids.shape
    is_image = input_ids == placeholder
    images = int(is_image.sum())
    if images != features.shape[0]:
        raise ValueError(f"{images} image placeholders in the batch but {features.shape[0]} "
                         "images: each image needs exactly one <image> in the text")
    n = features.shape[1] if images else 1
    grow = (n - 1) * is_image.long()
    # Where each token lands: its index plus the extra room taken by images before it.
    target = torch.arange(width, device=input_ids.device) + torch.cumsum(grow, 1) - grow
    lengths = width + grow.sum(1)
    new_width = int(lengths.max())
    text_rows, text_cols = torch.nonzero(~is_image, as_tuple=True)
    text_target = target[text_rows, text_cols]
    text_embeds = embed_tokens(input_ids[text_rows, text_cols])
    hidden = text_embeds.shape[-1]
    embeds = torch.zeros(rows, new_width, hidden, dtype=text_embeds.dtype,
                         device=text_embeds.device)
    embeds = embeds.index_put((text_rows, text_target), text_embeds)
    img_rows, img_cols = torch.nonzero(is_image, as_tuple=True)
    span = torch.arange(n, device=input_ids.device)
    img_target = (target[img_rows, img_cols][:, None] + span).reshape(-1)
    img_rows_flat = img_rows.repeat_interleave(n)
    if images:
        embeds = embeds.index_put((img_rows_flat, img_target),
                                  features.reshape(-1, hidden).to(embeds.dtype))

    def stretch(values, image_fill, pad_fill):
        if values is None:
            return None
        out = _stretch(values[text_rows, text_cols], text_rows, text_target,
                       (rows, new_width), pad_fill)
        out[img_rows_flat, img_target] = image_fill
        return out

    new_cumulative = None
    if cumulative_len is not None:
        if rows != 1:
            raise ValueError("packed batches must be one row")
        before = torch.cat([grow.new_zeros(1), torch.cumsum(grow[0], 0)])
        new_cumulative = cumulative_len + before[cumulative_len.long()].to(cumulative_len)
        sample_lengths = (new_cumulative[1:] - new_cumulative[:-1]).long()
        starts = torch.repeat_interleave(new_cumulative[:-1].long(), sample_lengths)
        position_ids = (torch.arange(new_width, device=input_ids.device) - starts)[None]
    else:
        position_ids = torch.arange(new_width, device=input_ids.device).expand(rows, -1)
    mask = attention_mask
    if mask is None and bool((lengths != new_width).any()):
        mask = torch.ones_like(input_ids)  # rows of different spliced length need one
    return SplicedInputs(
        inputs_embeds=embeds,
        position_ids=position_ids,
        labels=stretch(labels, IGNORE_INDEX, IGNORE_INDEX),
        attention_mask=stretch(mask, 1, 0),
        loss_weights=stretch(loss_weights, 0, 0),
        cumulative_len=new_cumulative,
    )
