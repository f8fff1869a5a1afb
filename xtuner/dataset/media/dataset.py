"""``MediaJsonlDataset``: JSONL chat records with media, tokenized by a
:class:`~xtuner.dataset.media.MediaTokenizeFunction`, optionally packed into rows.

Records are tokenized when the dataset is built (media files are only probed for their
length then); the media are loaded when a sample is read. Every problem with a record is one
:class:`~xtuner.utils.errors.DataError` line naming ``file:line``.
"""
from __future__ import annotations

import json

import torch
from mmengine import print_log
from torch.utils.data import Dataset

from xtuner.utils.errors import ConfigError, DataError

from ..packing import PackingStats, plan_packed_rows

__all__ = ["MediaJsonlDataset", "read_jsonl"]


def read_jsonl(path: str):
    """Yield ``(line_number, record)`` of a JSONL file; a bad line is a DataError."""
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    with f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not JSON ({exc.msg})") from None


class MediaJsonlDataset(Dataset):
    """Chat records with media parts (the seed's ``VLMJsonlDataset`` + tokenize function).

    Args:
        data_path: a JSONL file (or a list of them), one ``{"messages": [...]}`` per line.
        tokenize_fn: a :class:`~xtuner.dataset.media.MediaTokenizeFunction` (or its config
            dict).
        pack_to_max_length: pack whole samples into rows of at most
            ``tokenize_fn.max_length`` tokens (for ``use_varlen_attn``).
        seed: shuffle seed of the packing plan.
    """

    def __init__(self, data_path, tokenize_fn, pack_to_max_length: bool = False,
                 seed: int = 0):
        from xtuner.model.utils import build_from_cfg

        super().__init__()
        self.tokenize_fn = build_from_cfg(tokenize_fn)
        paths = [data_path] if isinstance(data_path, str) else list(data_path)
        self.samples = []
        for path in paths:
            for number, record in read_jsonl(path):
                where = f"{path}:{number}"
                try:
                    sample = self.tokenize_fn(record)
                except DataError as exc:
                    raise DataError(f"{where}: {exc}") from None
                sample["where"] = where
                self.samples.append(sample)
        self.rows = None
        if pack_to_max_length:
            budget = self.tokenize_fn.max_length
            if not budget:
                raise ConfigError("pack_to_max_length=True needs the tokenize function's "
                                  "max_length (the row length)")
            lengths = [s["num_tokens"] for s in self.samples]
            order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed))
            shuffled = [lengths[i] for i in order.tolist()]
            self.rows = [[int(order[i]) for i in row]
                         for row in plan_packed_rows(shuffled, budget)]
            print_log(str(PackingStats(samples=len(lengths), rows=len(self.rows),
                                       tokens=sum(lengths), max_length=budget)),
                      logger="current")

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.samples)

    def _media(self, sample: dict) -> list[torch.Tensor]:
        try:
            return [self.tokenize_fn.load(r) for r in sample["media"]]
        except DataError as exc:
            raise DataError(f"{sample['where']}: {exc}") from None

    def __getitem__(self, index: int) -> dict:
        if self.rows is None:
            sample = self.samples[index]
            return {"input_ids": sample["input_ids"], "labels": sample["labels"],
                    "media": self._media(sample)}
        input_ids, labels, positions, bounds, media = [], [], [], [0], []
        for i in self.rows[index]:
            sample = self.samples[i]
            input_ids += sample["input_ids"]
            labels += sample["labels"]
            positions += range(len(sample["input_ids"]))
            bounds.append(bounds[-1] + len(sample["input_ids"]))
            media += self._media(sample)
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions,
                "cumulative_len": bounds, "media": media}
