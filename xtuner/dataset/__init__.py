"""Data pipeline: load -> map fn -> template -> tokenize -> pack -> collate.

v0 import paths are kept: ``from xtuner.dataset import process_hf_dataset, ConcatDataset``.
"""
from .cache import load_processed_dataset
from .concat_dataset import ConcatDataset
from .huggingface import process_hf_dataset
from .llava import LLaVADataset
from .packing import PackingStats, pack_dataset, plan_packed_rows
from .preference_dataset import build_preference_dataset, load_jsonl_dataset
from .tokenize import encode_fn

__all__ = [
    "ConcatDataset",
    "LLaVADataset",
    "process_hf_dataset",
    "load_processed_dataset",
    "encode_fn",
    "pack_dataset",
    "plan_packed_rows",
    "PackingStats",
    "build_preference_dataset",
    "load_jsonl_dataset",
]
