"""Collate functions (v0 import path: ``xtuner.dataset.collate_fns``)."""
from xtuner.evaluation.mmlu import mmlu_collate_fn

from .default_collate_fn import default_collate_fn
from .preference_collate_fn import preference_collate_fn

__all__ = ["default_collate_fn", "preference_collate_fn", "mmlu_collate_fn"]
