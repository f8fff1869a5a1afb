"""``default_collate_fn``: padded batches and variable-length (packed) batches."""
from __future__ import annotations

import torch

from xtuner.dataset.collate_fns import default_collate_fn

IGNORE = -100


def test_padded_batch_uses_the_given_pad_index():
    instances = [
        {"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
        {"input_ids": [8], "labels": [8]},
        {"input_ids": [9, 10], "labels": [IGNORE, 10]},
    ]
    out = default_collate_fn(instances, pad_index=2)
    assert set(out) == {"data", "data_samples"} and out["data_samples"] is None
    data = out["data"]
    assert data["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2], [9, 10, 2]]
    assert data["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE],
                                       [IGNORE, 10, IGNORE]]
    assert data["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert data["position_ids"].tolist() == [[0, 1, 2]] * 3
    assert data["input_ids"].dtype == data["labels"].dtype == torch.long
    assert "cumulative_len" not in data


def test_padded_batch_default_pad_is_v0s_zero():
    data = default_collate_fn([{"input_ids": [5, 6], "labels": [5, 6]},
                               {"input_ids": [7], "labels": [7]}], return_hf_format=True)
    assert data["input_ids"].tolist() == [[5, 6], [7, 0]]
    assert data["attention_mask"].tolist() == [[1, 1], [1, 0]]


def test_varlen_batch_concatenates_rows():
    rows = [
        {"input_ids": [1, 2, 3, 4, 5], "labels": [IGNORE, 2, 3, IGNORE, 5],
         "position_ids": [0, 1, 2, 0, 1], "cumulative_len": [0, 3, 5]},
        {"input_ids": [6, 7, 8, 9], "labels": [6, 7, 8, 9],
         "position_ids": [0, 1, 2, 3], "cumulative_len": [0, 4]},
        # An unpacked sample: its own sequence.
        {"input_ids": [10, 11], "labels": [IGNORE, 11]},
    ]
    data = default_collate_fn(rows, use_varlen_attn=True, return_hf_format=True)
    assert data["input_ids"].tolist() == [list(range(1, 12))]
    # The first label of every sample is ignored: it would be predicted from the last token
    # of the sample before it (here the trainable 6 after 5, and 4 after 3 already was).
    assert data["labels"].tolist() == [[IGNORE, 2, 3, IGNORE, 5, IGNORE, 7, 8, 9, IGNORE, 11]]
    assert data["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3, 0, 1]]
    assert len(data["cumulative_len"]) == 1
    assert data["cumulative_len"][0].tolist() == [0, 3, 5, 9, 11]
    assert data["cumulative_len"][0].dtype == torch.int32
    assert data["max_seqlen"] == 4
    assert "attention_mask" not in data


def test_varlen_accepts_tensors_and_wraps_for_mmengine():
    row = {"input_ids": torch.tensor([3, 4, 5]), "labels": torch.tensor([3, 4, 5]),
           "position_ids": torch.tensor([0, 0, 1]), "cumulative_len": torch.tensor([0, 1, 3])}
    out = default_collate_fn([row], use_varlen_attn=True)
    assert out["data_samples"] is None
    assert out["data"]["labels"].tolist() == [[3, IGNORE, 5]]
    assert out["data"]["cumulative_len"][0].tolist() == [0, 1, 3]
    assert out["data"]["max_seqlen"] == 2


def test_padded_packed_rows_train_no_target_across_samples():
    """v0-style packed rows without varlen attention: samples still see each other, but the
    first label of each sample is ignored and the boundaries are kept for the loss."""
    rows = [
        {"input_ids": [1, 2, 3, 4, 5], "labels": [1, 2, 3, 4, 5],
         "position_ids": [0, 1, 2, 0, 1], "cumulative_len": [0, 3, 5]},
        {"input_ids": [6, 7], "labels": [6, 7], "position_ids": [0, 1],
         "cumulative_len": [0, 2]},
    ]
    data = default_collate_fn(rows, pad_index=0, return_hf_format=True)
    assert data["labels"].tolist() == [[1, 2, 3, IGNORE, 5], [6, 7, IGNORE, IGNORE, IGNORE]]
    assert [b.tolist() for b in data["sample_bounds"]] == [[0, 3, 5], [0, 2]]
    assert data["position_ids"].tolist() == [[0, 1, 2, 3, 4]] * 2  # v0's positions
