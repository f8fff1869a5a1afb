"""``LengthGroupedSampler``: batches of similar length, to waste less on padding (v0 API)."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import ConcatDataset as TorchConcatDataset
from torch.utils.data import Sampler

__all__ = ["LengthGroupedSampler", "get_length_grouped_indices"]


def _megabatches(indices: list[int], lengths, size: int) -> list[list[int]]:
    chunks = [indices[i:i + size] for i in range(0, len(indices), size)]
    return [sorted(chunk, key=lambda i: abs(lengths[i]), reverse=True) for chunk in chunks]


def get_length_grouped_indices(lengths, group_batch_size: int, generator=None) -> list[int]:
    """A random order in which each megabatch of ``group_batch_size`` is sorted by length.

    Positive lengths are multimodal samples and negative ones text-only (LLaVA's
    ``modality_length``); mixed data is grouped per modality so batches do not mix them, and
    the two short remainders go last. The longest sample comes first, so an out-of-memory
    shows at once.
    """
    def shuffled(idx: list[int]) -> list[int]:
        perm = torch.randperm(len(idx), generator=generator).tolist()
        return [idx[i] for i in perm]

    if any(n == 0 for n in lengths):
        raise ValueError("LengthGroupedSampler got a sample of length 0")
    positive = [i for i, n in enumerate(lengths) if n > 0]
    negative = [i for i, n in enumerate(lengths) if n < 0]
    if positive and negative:
        mm = _megabatches(shuffled(positive), lengths, group_batch_size)
        text = _megabatches(shuffled(negative), lengths, group_batch_size)
        # Only full megabatches are shuffled; the two remainders go last so that batch
        # boundaries stay aligned with megabatch boundaries.
        tail = mm.pop() + text.pop()
        groups = mm + text
        order = torch.randperm(len(groups), generator=generator).tolist()
        groups = [groups[i] for i in order]
        if tail:
            groups.append(sorted(tail, key=lambda i: abs(lengths[i]), reverse=True))
    else:
        groups = _megabatches(shuffled(list(range(len(lengths)))), lengths, group_batch_size)
    if groups:
        # Put the longest sample first: swap its megabatch to the front when both are full
        # size (batch boundaries stay aligned), else swap just the two first samples (as v0).
        longest = max(range(len(groups)), key=lambda g: abs(lengths[groups[g][0]]))
        if longest != 0 and len(groups[longest]) == len(groups[0]):
            groups[0], groups[longest] = groups[longest], groups[0]
        elif longest != 0:
            groups[0][0], groups[longest][0] = groups[longest][0], groups[0][0]
            for g in (0, longest):
                groups[g].sort(key=lambda i: abs(lengths[i]), reverse=True)
    return [i for group in groups for i in group]


class LengthGroupedSampler(Sampler):
    """Distributed sampler that groups samples of similar length into the same batches.

    Args:
        dataset: a dataset with a ``length`` list (``process_hf_dataset`` sets it), or a torch
            ``ConcatDataset`` of such datasets.
        per_device_batch_size: the dataloader's batch size.
        length_property: the attribute holding the lengths.
        mega_batch_mult: megabatch size in global batches (default: min(len / (4 * global
            batch), 50), at least 1).
        seed: shuffling seed (synchronised across ranks when None).
        round_up: pad the index list so every rank gets the same number of samples.
    """

    def __init__(self, dataset, per_device_batch_size: int, length_property: str = "length",
                 mega_batch_mult: int | None = None, seed: int | None = None,
                 round_up: bool = True):
        rank, world_size = get_dist_info()
        self.rank, self.world_size = rank, world_size
        self.dataset = dataset
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        self.round_up = round_up
        if isinstance(dataset, TorchConcatDataset):
            self.lengths = [n for d in dataset.datasets for n in getattr(d, length_property)]
        else:
            self.lengths = list(getattr(dataset, length_property))
        total_batch = per_device_batch_size * world_size
        if mega_batch_mult is None:
            mega_batch_mult = max(min(len(dataset) // (total_batch * 4), 50), 1)
        self.group_batch_size = mega_batch_mult * total_batch
        if round_up:
            self.num_samples = math.ceil(len(dataset) / world_size)
            self.total_size = self.num_samples * world_size
        else:
            self.num_samples = math.ceil((len(dataset) - rank) / world_size)
            self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        indices = get_length_grouped_indices(self.lengths, self.group_batch_size, generator)
        if self.round_up:
            indices = (indices * math.ceil(self.total_size / max(1, len(indices))))
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.world_size])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Called by mmengine's ``DistSamplerSeedHook`` to reshuffle every epoch."""
        self.epoch = epoch
