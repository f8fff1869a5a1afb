"""``ConcatDataset``: mix several dataset configs into one (XTuner v0's API)."""
from __future__ import annotations

from torch.utils.data import ConcatDataset as TorchConcatDataset

from xtuner.registry import BUILDER

__all__ = ["ConcatDataset"]


class ConcatDataset(TorchConcatDataset):
    """Concatenate datasets given as objects or config dicts (built with ``BUILDER``).

    ``length`` concatenates the sub-datasets' ``length`` lists when they all have one, so
    :class:`~xtuner.dataset.samplers.LengthGroupedSampler` works on the mix.
    """

    def __init__(self, datasets):
        built = [BUILDER.build(d) if isinstance(d, dict) else d for d in datasets]
        super().__init__(built)
        if all(hasattr(d, "length") for d in built):
            self.length = [n for d in built for n in d.length]

    def __repr__(self) -> str:
        return f"ConcatDataset({len(self.datasets)} datasets, {len(self)} samples)"
