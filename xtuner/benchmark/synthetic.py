"""Synthetic packed training rows: what a packed SFT dataset looks like to the model."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from xtuner.utils.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

__all__ = ["SyntheticPackedDataset", "DEFAULT_SAMPLE_LENGTHS"]

# Lengths of the samples packed into a row: typical instruction-tuning data (alpaca-like
# prompts and answers) runs from about a hundred to about a thousand tokens.
DEFAULT_SAMPLE_LENGTHS = (128, 1024)


class SyntheticPackedDataset(Dataset):
    """Rows of exactly ``max_length`` random tokens, each a pack of whole samples.

    Sample lengths are drawn uniformly from ``sample_lengths`` (the last sample of a row is cut
    to fill it, as packing by concatenation does); the first quarter of each sample is its
    prompt (label ``-100``), the rest is trained. Rows carry ``position_ids`` restarting at 0
    per sample and ``cumulative_len`` (the boundaries), like :func:`xtuner.dataset.pack_dataset`.
    Row ``i`` is the same on every call and every rank.

    Args:
        vocab_size: token ids are drawn from ``[0, vocab_size)``.
        max_length: tokens per row.
        num_rows: the dataset's length.
        sample_lengths: ``(min, max)`` sample length in tokens.
        seed: base seed.
        image_tokens: for a LLaVA model, the features one image becomes: each sample then
            opens with one image placeholder (its image counted as ``image_tokens`` of the
            sample's length) and the row carries random ``pixel_values``.
        image_size: the images' side in pixels (with ``image_tokens``).
    """

    def __init__(self, vocab_size: int, max_length: int, num_rows: int,
                 sample_lengths: tuple[int, int] = DEFAULT_SAMPLE_LENGTHS, seed: int = 0,
                 image_tokens: int = 0, image_size: int | None = None):
        low, high = (int(v) for v in sample_lengths)
        if not 1 <= low <= high:
            raise ValueError(f"sample lengths must satisfy 1 <= min <= max, got {low}:{high}")
        self.vocab_size = int(vocab_size)
        self.max_length = int(max_length)
        self.num_rows = int(num_rows)
        if image_tokens:
            # Every sample holds its image and a few text tokens.
            low, high = max(low, image_tokens + 8), max(high, image_tokens + 8)
            if not image_size:
                raise ValueError("image_tokens needs image_size")
        self.sample_lengths = (low, high)
        self.seed = seed
        self.image_tokens = int(image_tokens)
        self.image_size = image_size

    def __len__(self) -> int:
        return self.num_rows

    def sample_lengths_of(self, index: int) -> list[int]:
        """The lengths of the samples packed into row ``index``."""
        rng = np.random.default_rng([self.seed, index])
        lengths, total = [], 0
        low, high = self.sample_lengths
        while total < self.max_length:
            n = min(int(rng.integers(low, high + 1)), self.max_length - total)
            if self.image_tokens and n < self.image_tokens + 2 and lengths:
                lengths[-1] += n  # too short a rest to hold an image: the last sample grows
            else:
                lengths.append(n)
            total += n
        return lengths

    def __getitem__(self, index: int) -> dict:
        """Row ``index``; with images, lengths count each image as ``image_tokens``."""
        lengths = self.sample_lengths_of(index)
        rng = np.random.default_rng([self.seed, index, 1])
        extra = max(self.image_tokens - 1, 0)
        text_lengths = [n - extra for n in lengths] if self.image_tokens else lengths
        input_ids = rng.integers(0, self.vocab_size, sum(text_lengths)).tolist()
        labels, positions, bounds = [], [], [0]
        for n in text_lengths:
            prompt = n // 4
            start = bounds[-1]
            if self.image_tokens:  # the image is part of the prompt
                input_ids[start + 1] = IMAGE_TOKEN_INDEX
                prompt = max(prompt, 2)
            labels += [IGNORE_INDEX] * prompt + input_ids[start + prompt:start + n]
            positions += list(range(n))
            bounds.append(start + n)
        row = {"input_ids": input_ids, "labels": labels, "position_ids": positions,
               "cumulative_len": bounds}
        if self.image_tokens:
            generator = torch.Generator().manual_seed(self.seed * 100003 + index)
            row["pixel_values"] = torch.randn(len(lengths), 3, self.image_size,
                                              self.image_size, generator=generator)
        return row
