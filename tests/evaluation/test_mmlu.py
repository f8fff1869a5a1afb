"""v0's MMLU metric and collate function for ``xtuner test``: equal to v0's own code."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from rich.console import Console
from rich.table import Table
from torch.nn.utils.rnn import pad_sequence
from v0_tools import v0_definitions

from xtuner.evaluation.mmlu import MMLUMetric, mmlu_collate_fn
from xtuner.utils.constants import DEFAULT_PAD_TOKEN_INDEX, IGNORE_INDEX


class _Tokenizer:
    def encode(self, text, add_special_tokens=True):
        return [ord(text[0]) - ord("A") + 5, 99]


def _instances():
    gen = torch.Generator().manual_seed(0)
    out = []
    subjects = ["anatomy", "anatomy", "college_physics", "world_religions", "marketing", "virology"]
    for i, subject in enumerate(subjects):
        n = 3 + i % 3
        ids = torch.randint(1, 20, (n,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * n, "output": "ABCD"[i % 4],
                    "subject": subject})
    return out


def test_collate_and_metric_equal_v0():
    ns = {"torch": torch, "pad_sequence": pad_sequence, "Sequence": list, "Dict": dict,
          "DEFAULT_PAD_TOKEN_INDEX": DEFAULT_PAD_TOKEN_INDEX, "IGNORE_INDEX": IGNORE_INDEX}
    v0_collate = v0_definitions("dataset/collate_fns/mmlu_collate_fn.py", ["mmlu_collate_fn"],
                                ns)["mmlu_collate_fn"]
    ns = {"np": np, "torch": torch, "BaseMetric": BaseMetric, "print_log": print_log,
          "Console": Console, "Table": Table, "Any": object, "Sequence": list,
          "BUILDER": type("B", (), {"build": staticmethod(lambda t: t)})}
    v0_metric = v0_definitions("evaluation/metrics/mmlu_metric.py", ["MMLUMetric"],
                               ns)["MMLUMetric"](_Tokenizer())
    ours = MMLUMetric(_Tokenizer())
    instances = _instances()
    gen = torch.Generator().manual_seed(1)
    for batch in (instances[:4], instances[4:]):
        v0_batch, our_batch = v0_collate(batch), mmlu_collate_fn(batch)
        for key in ("input_ids", "attention_mask", "labels"):
            assert torch.equal(v0_batch["data"][key], our_batch["data"][key])
        assert v0_batch["data_samples"] == our_batch["data_samples"]
        width = our_batch["data"]["input_ids"].shape[1]
        outputs = [{"logits": torch.randn(width, 12, generator=gen)} for _ in batch]
        v0_metric.process(v0_batch, outputs)
        ours.process(our_batch, outputs)
    assert ours.results == v0_metric.results
    expected = v0_metric.compute_metrics(v0_metric.results)
    assert ours.compute_metrics(ours.results) == pytest.approx(expected)
    assert {"anatomy", "health", "STEM", "average"} <= set(expected)
