"""Whole-sample packing: the row plan and ``pack_dataset`` on a real ``datasets.Dataset``."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from datasets import Dataset

from xtuner.dataset import PackingStats, pack_dataset, plan_packed_rows

IGNORE = -100


def next_fit_rows(lengths, max_length):
    """Naive next-fit in file order: the baseline packing must never lose to."""
    rows, used = 0, max_length + 1
    for n in lengths:
        if used + n > max_length:
            rows, used = rows + 1, 0
        used += n
    return rows


def best_fit_decreasing_loads(lengths, max_length):
    """Brute-force best-fit decreasing (O(n * rows)): sorted row loads, to check the index."""
    loads: list[int] = []
    for n in sorted(lengths, reverse=True):
        fits = [i for i, load in enumerate(loads) if load + n <= max_length]
        if fits:
            best = max(fits, key=lambda i: loads[i])
            loads[best] += n
        else:
            loads.append(n)
    return sorted(loads)


def check_plan(rows, lengths, max_length):
    flat = [i for row in rows for i in row]
    assert sorted(flat) == list(range(len(lengths)))  # every sample exactly once, whole
    for row in rows:
        assert row and row == sorted(row)  # file order inside a row
        assert sum(lengths[i] for i in row) <= max_length
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)


def test_plan_small_exact():
    rows = plan_packed_rows([5, 3, 7, 2, 4, 1], max_length=8)
    # BFD: 7 -> A; 5 -> B; 4 -> C; 3 -> B (8); 2 -> C (6); 1 -> A (8).
    assert rows == [[0, 1], [2, 5], [3, 4]]


@pytest.mark.parametrize("seed", range(25))
def test_plan_property_random_lengths(seed):
    rng = random.Random(seed)
    max_length = rng.choice([16, 64, 100, 512, 2048])
    n = rng.randint(0, 300)
    shape = rng.choice(["uniform", "short", "long", "mixed"])
    if shape == "uniform":
        lengths = [rng.randint(1, max_length) for _ in range(n)]
    elif shape == "short":
        lengths = [rng.randint(1, max(1, max_length // 8)) for _ in range(n)]
    elif shape == "long":
        lengths = [rng.randint(max_length // 2, max_length) for _ in range(n)]
    else:
        lengths = [rng.choice([1, max_length, rng.randint(1, max_length)]) for _ in range(n)]

    rows = plan_packed_rows(lengths, max_length)
    check_plan(rows, lengths, max_length)
    assert plan_packed_rows(list(lengths), max_length) == rows  # deterministic
    loads = sorted(sum(lengths[i] for i in row) for row in rows)
    assert loads == best_fit_decreasing_loads(lengths, max_length)
    assert len(rows) >= math.ceil(sum(lengths) / max_length)
    assert len(rows) <= next_fit_rows(lengths, max_length)  # efficiency >= next-fit's


def test_plan_edge_cases():
    assert plan_packed_rows([], 8) == []
    assert plan_packed_rows([8, 8], 8) == [[0], [1]]
    assert plan_packed_rows([1] * 5, 2) == [[0, 1], [2, 3], [4]]


def test_plan_rejects_an_overlong_sample():
    with pytest.raises(ValueError, match="9 tokens exceeds max_length=8"):
        plan_packed_rows([3, 9, 2], 8)


def _tokenized(lengths):
    # Sample i's tokens are 1000*i + j, so every token says where it came from; label every
    # other token IGNORE so labels are not just a copy of input_ids.
    return Dataset.from_dict({
        "input_ids": [[1000 * i + j for j in range(n)] for i, n in enumerate(lengths)],
        "labels": [[1000 * i + j if j % 2 else IGNORE for j in range(n)]
                   for i, n in enumerate(lengths)],
    })


@pytest.mark.parametrize("shuffle", [False, True])
def test_pack_dataset_rows(shuffle):
    lengths = [5, 3, 7, 2, 4, 1, 8, 6, 6, 2]
    source = _tokenized(lengths)
    packed, stats = pack_dataset(source, max_length=8, shuffle=shuffle, seed=3)
    assert stats == PackingStats(samples=10, rows=len(packed), tokens=44, max_length=8)
    assert len(packed) == 6  # 44 tokens need >= 6 rows of 8; BFD finds a perfect packing
    assert stats.efficiency == pytest.approx(44 / 48)
    assert str(stats) == ("packed 10 samples (44 tokens) into 6 rows of at most 8 tokens: "
                          "packing efficiency 91.7%")
    seen = []
    for row in packed:
        bounds = row["cumulative_len"]
        assert bounds[0] == 0 and bounds[-1] == len(row["input_ids"]) == row["length"] <= 8
        assert len(row["labels"]) == len(row["position_ids"]) == row["length"]
        for start, end in zip(bounds, bounds[1:]):
            sample = row["input_ids"][start] // 1000
            seen.append(sample)
            # The segment is sample `sample`, whole and in order...
            assert row["input_ids"][start:end] == source[sample]["input_ids"]
            assert row["labels"][start:end] == source[sample]["labels"]
            # ...and its positions restart at 0 at the boundary.
            assert row["position_ids"][start:end] == list(range(end - start))
    assert sorted(seen) == list(range(10))
    again, _ = pack_dataset(source, max_length=8, shuffle=shuffle, seed=3)
    assert again.to_dict() == packed.to_dict()  # seeded: a resumed run packs identically


def test_pack_dataset_shuffle_changes_grouping_with_seed():
    source = _tokenized([3] * 40)
    a, _ = pack_dataset(source, max_length=9, shuffle=True, seed=0)
    b, _ = pack_dataset(source, max_length=9, shuffle=True, seed=1)
    assert len(a) == len(b) == 14
    assert a["input_ids"] != b["input_ids"]


def test_pack_dataset_rejects_overlong_sample():
    with pytest.raises(ValueError, match="exceeds max_length=4"):
        pack_dataset(_tokenized([3, 5]), max_length=4, shuffle=False)


def test_v0_packing_reproduces_v0s_packer(v0):
    """``packing='v0'`` gives XTuner 0.2.0's own Packer rows (ids, labels, boundaries,
    positions), including the tail it drops, with samples cut across rows."""
    from xtuner.dataset.packing import pack_dataset_v0

    rng = np.random.default_rng(0)
    samples = []
    for _ in range(2500):  # more than one map batch of 1000
        n = int(rng.integers(1, 40))
        ids = rng.integers(3, 500, n).tolist()
        samples.append({"input_ids": ids, "labels": [-100] * (n // 3) + ids[n // 3:]})
    dataset = Dataset.from_list(samples)
    ours, _ = pack_dataset_v0(dataset, max_length=64)
    theirs = dataset.map(v0.Packer(64, use_varlen_attn=True), batched=True)
    assert len(ours) == len(theirs) > 100
    for key in ("input_ids", "labels", "cumulative_len", "position_ids"):
        assert ours[key] == theirs[key], key
