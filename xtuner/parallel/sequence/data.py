"""Pad and split a batch for sequence parallelism (v0's ``data_collate`` API and the shard
of one rank).

Every rank of a sequence-parallel group holds the whole batch (same samples); the model
splits it just before the LLM runs (:func:`shard_for_sequence_parallel`):

1. labels are shifted first (``shift_labels[t] = labels[t + 1]``), so the target at each
   shard boundary is kept;
2. the sequence is padded to a multiple of ``N``: padding is never trained (label -100) and,
   in a packed row, forms a sample of its own, so real samples never attend to it;
3. each rank keeps its ``1/N`` of tokens, positions, shifted labels and loss weights.

Right-padded rows need no attention mask here: attention is causal over the gathered
sequence, so a real token never sees the padding after it, and padding is never trained.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from xtuner.utils.constants import IGNORE_INDEX

__all__ = ["SequenceShard", "pad_for_sequence_parallel",
           "pad_cumulative_len_for_sequence_parallel", "shard_for_sequence_parallel"]


def pad_for_sequence_parallel(tensor: torch.Tensor, padding_value, dim: int = -1,
                              sp_size: int | None = None) -> torch.Tensor:
    """Pad ``tensor`` along ``dim`` to a multiple of ``sp_size`` (v0's signature; default the
    sequence-parallel size)."""
    if sp_size is None:
        from .setup_distributed import get_sequence_parallel_world_size

        sp_size = get_sequence_parallel_world_size()
    pad = (-tensor.shape[dim]) % sp_size
    if not pad:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = pad
    fill = torch.full(shape, padding_value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor, fill], dim=dim)


def _pad_cumulative_len(cumulative_len: torch.Tensor, total: int) -> torch.Tensor:
    """Sample boundaries of a packed row padded to ``total`` tokens: the padding is one more
    sample (so no real sample attends to it)."""
    if int(cumulative_len[-1]) >= total:
        return cumulative_len
    return torch.cat([cumulative_len, cumulative_len.new_tensor([total])])


def pad_cumulative_len_for_sequence_parallel(cumulative_len: list[torch.Tensor]):
    """v0's helper for a packed row (``cumulative_len`` a list of one boundaries tensor):
    ``(boundaries with the padding to a multiple of N as one more sample, mask of the real
    tokens or None when no padding is needed)``. The models pad by themselves
    (:func:`shard_for_sequence_parallel`); this is kept for v0 code."""
    from .setup_distributed import get_sequence_parallel_world_size

    if len(cumulative_len) != 1:
        raise ValueError("a packed batch is one row: cumulative_len holds one tensor")
    length = int(cumulative_len[0][-1])
    padded = length + (-length) % get_sequence_parallel_world_size()
    if padded == length:
        return cumulative_len, None
    mask = torch.zeros(1, padded, dtype=torch.bool, device=cumulative_len[0].device)
    mask[:, :length] = True
    return [_pad_cumulative_len(cumulative_len[0], padded)], mask


@dataclass
class SequenceShard:
    """One rank's part of a batch.

    Attributes:
        inputs: the LLM's keyword arguments for the shard (``input_ids`` or
            ``inputs_embeds``, ``position_ids``, the varlen boundaries of the whole padded row,
            ``sequence_parallel_group``); no ``attention_mask`` and no labels.
        shift_labels: ``(rows, S/N)``: the label each shard position predicts (-100: none).
        shift_weights: the loss weight of each shard position, when the batch has weights.
        sequence_ids: which sequence (row, or sample of a packed row) each shard position's
            target belongs to, when asked for.
        num_sequences: how many sequences the batch has (without the padding sample).
    """

    inputs: dict
    shift_labels: torch.Tensor | None = None
    shift_weights: torch.Tensor | None = None
    sequence_ids: torch.Tensor | None = None
    num_sequences: int = 0


def _shift(values: torch.Tensor, fill, sample_starts: torch.Tensor | None) -> torch.Tensor:
    """``out[t] = values[t + 1]``; ``fill`` at the end and where ``t + 1`` starts a sample (a
    sample's first token is never predicted from the previous sample)."""
    out = torch.cat([values[:, 1:], values.new_full((values.shape[0], 1), fill)], dim=1)
    if sample_starts is not None and len(sample_starts):
        out[:, sample_starts - 1] = fill
    return out


def _check_right_padded(mask: torch.Tensor) -> None:
    mask = mask.bool()
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("sequence parallelism needs right-padded rows (attention_mask "
                         "1...1 0...0); this batch is padded on the left")


def shard_for_sequence_parallel(inputs: dict, group, labels: torch.Tensor | None = None,
                                loss_weights: torch.Tensor | None = None,
                                with_sequence_ids: bool = False) -> SequenceShard:
    """Shift, pad and split a batch's LLM inputs for this rank of ``group``.

    Args:
        inputs: the LLM's keyword arguments for the whole batch (``input_ids`` or
            ``inputs_embeds``; optional ``position_ids``, ``attention_mask`` (right padding),
            and for a packed row ``cu_seq_lens_q``/``cu_seq_lens_k``/``max_length_q``/
            ``max_length_k``). Other keys are passed on unchanged.
        group: the sequence-parallel process group.
        labels: ``(rows, S)`` labels aligned with the tokens (``labels[t]`` is predicted from
            position ``t - 1``).
        loss_weights: per-label weights aligned with ``labels``.
        with_sequence_ids: also return :attr:`SequenceShard.sequence_ids`.
    """
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    inputs = dict(inputs)
    key = "input_ids" if inputs.get("input_ids") is not None else "inputs_embeds"
    tokens = inputs.pop(key)
    rows, length = tokens.shape[:2]
    device = tokens.device
    pad = (-length) % world
    padded_length = length + pad
    cu = inputs.get("cu_seq_lens_q")
    starts = cu[1:-1].long().to(device) if cu is not None else None
    mask = inputs.pop("attention_mask", None)
    if mask is not None:
        _check_right_padded(mask)
    positions = inputs.get("position_ids")
    if positions is None:
        positions = torch.arange(length, device=device).expand(rows, length)

    def split(x, dim=1):
        return x.chunk(world, dim=dim)[rank].contiguous()

    if key == "input_ids":
        tokens = F.pad(tokens, (0, pad), value=0)
    else:  # (rows, S, hidden)
        tokens = F.pad(tokens, (0, 0, 0, pad))
    # positions are (rows, S), or (3, rows, S) for multimodal RoPE: the sequence is last
    tail_shape = (*positions.shape[:-1], pad)
    if cu is not None:
        # the padding is a sample of its own, positions from 0
        tail = torch.arange(pad, device=device).expand(tail_shape)
        cu = _pad_cumulative_len(cu, padded_length)
        longest = max(int(inputs.get("max_length_q") or 0), pad)
        inputs.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest,
                      max_length_k=longest)
    else:
        tail = torch.arange(length, padded_length, device=device).expand(tail_shape)
    inputs[key] = split(tokens)
    positions = torch.cat([positions.to(device), tail.to(positions.dtype)], dim=-1)
    inputs["position_ids"] = split(positions, dim=-1)
    inputs["sequence_parallel_group"] = group
    shard = SequenceShard(inputs=inputs)
    if labels is not None:
        shifted = F.pad(_shift(labels.to(device), IGNORE_INDEX, starts), (0, pad),
                        value=IGNORE_INDEX)
        shard.shift_labels = split(shifted)
    if loss_weights is not None:
        shifted = F.pad(_shift(loss_weights.to(device), 0, starts), (0, pad), value=0)
        shard.shift_weights = split(shifted)
    if with_sequence_ids:
        if cu is not None:
            # shifted position t holds label t + 1, of the sample containing t + 1
            label_pos = torch.arange(1, padded_length + 1, device=device)
            ids = torch.searchsorted(cu.to(device).long(), label_pos, right=True) - 1
            ids = ids.clamp(max=len(cu) - 2)[None]
            shard.num_sequences = len(cu) - 1 - (1 if pad else 0)
            ids = ids.clamp(max=max(shard.num_sequences - 1, 0))
        else:
            ids = torch.arange(rows, device=device)[:, None].expand(rows, padded_length)
            shard.num_sequences = rows
        shard.sequence_ids = split(ids)
    return shard
