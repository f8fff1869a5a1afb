"""``LengthGroupedSampler`` and ``ConcatDataset``."""
from __future__ import annotations

import random

import pytest
import torch

import xtuner.dataset.samplers.length_grouped as length_grouped
from xtuner.dataset import ConcatDataset
from xtuner.dataset.samplers import LengthGroupedSampler


class LengthDataset:
    def __init__(self, lengths):
        self.length = list(lengths)

    def __len__(self):
        return len(self.length)

    def __getitem__(self, i):
        return self.length[i]


def _lengths(n, seed=0):
    rng = random.Random(seed)
    return [rng.randint(1, 1000) for _ in range(n)]


def _chunks(seq, size):
    return [seq[i:i + size] for i in range(0, len(seq), size)]


@pytest.mark.parametrize("n", [64, 70])
def test_megabatches_sorted_longest_first(n):
    lengths = _lengths(n)
    for seed in range(10):
        sampler = LengthGroupedSampler(LengthDataset(lengths), per_device_batch_size=4,
                                       mega_batch_mult=2, seed=seed)
        assert sampler.group_batch_size == 8
        order = list(sampler)
        assert sorted(order) == list(range(n)) and len(sampler) == n
        assert lengths[order[0]] == max(lengths)  # an out-of-memory shows at once
        # Batches are cut every 4 indices from the start, so the megabatches must stay
        # aligned to multiples of the group size for the grouping to reach the batches.
        for chunk in _chunks(order, 8):
            chunk_lengths = [lengths[i] for i in chunk]
            assert chunk_lengths == sorted(chunk_lengths, reverse=True), (seed, order)


def test_deterministic_per_seed_and_epoch():
    dataset = LengthDataset(_lengths(50))
    a = LengthGroupedSampler(dataset, per_device_batch_size=2, seed=7)
    b = LengthGroupedSampler(dataset, per_device_batch_size=2, seed=7)
    assert list(a) == list(b) == list(a)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(LengthGroupedSampler(dataset, per_device_batch_size=2, seed=8)) != first


def test_default_mega_batch_mult():
    sampler = LengthGroupedSampler(LengthDataset(_lengths(1000)), per_device_batch_size=4,
                                   seed=0)
    assert sampler.group_batch_size == 50 * 4  # min(1000 // 16, 50) == 50
    sampler = LengthGroupedSampler(LengthDataset(_lengths(10)), per_device_batch_size=4, seed=0)
    assert sampler.group_batch_size == 4  # at least one global batch


@pytest.mark.parametrize("n", [40, 41])
def test_two_ranks_partition_the_indices(monkeypatch, n):
    dataset = LengthDataset(_lengths(n))
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setattr(length_grouped, "get_dist_info", lambda rank=rank: (rank, 2))
        sampler = LengthGroupedSampler(dataset, per_device_batch_size=2, seed=3)
        assert sampler.group_batch_size == 2 * (2 * 2)  # mult = min(n // (4 * 4), 50) = 2
        per_rank.append(list(sampler))
        assert len(sampler) == (n + 1) // 2
    assert len(per_rank[0]) == len(per_rank[1])
    together = per_rank[0] + per_rank[1]
    assert sorted(set(together)) == list(range(n))
    if n % 2 == 0:
        assert sorted(together) == list(range(n))  # disjoint
    else:
        assert len(together) == n + 1  # round_up repeats exactly one index
    # Both ranks stride through the same global, length-grouped order.
    whole = length_grouped.get_length_grouped_indices(
        dataset.length, 8, torch.Generator().manual_seed(3))
    padded = (whole + whole)[:len(together)]
    assert per_rank[0] == padded[0::2] and per_rank[1] == padded[1::2]


def test_mixed_modality_batches_do_not_mix():
    # Positive lengths: multimodal samples; negative: text-only (LLaVA's modality_length).
    rng = random.Random(0)
    lengths = [rng.randint(1, 500) * rng.choice([1, -1]) for _ in range(83)]
    for seed in range(10):
        sampler = LengthGroupedSampler(LengthDataset(lengths), per_device_batch_size=4,
                                       mega_batch_mult=2, seed=seed)
        order = list(sampler)
        assert sorted(order) == list(range(len(lengths)))
        # v0 keeps every megabatch but the last one single-modality and full-size, so
        # batches (cut every 4 indices) only mix modalities in the leftovers at the end (and
        # in the first batch, where v0 swaps in the longest sample).
        batches = _chunks(order[:-2 * sampler.group_batch_size], 4)[1:]
        mixed = [b for b in batches if len({lengths[i] > 0 for i in b}) > 1]
        assert not mixed, (seed, mixed)


def test_concat_dataset_lengths_and_sampler():
    a, b = LengthDataset([3, 1, 2]), LengthDataset([9, 5])
    concat = ConcatDataset([a, b])
    assert len(concat) == 5 and concat.length == [3, 1, 2, 9, 5]
    assert [concat[i] for i in range(5)] == [3, 1, 2, 9, 5]
    order = list(LengthGroupedSampler(concat, per_device_batch_size=5, seed=0))
    assert order == [3, 4, 0, 2, 1]  # one megabatch, longest first
