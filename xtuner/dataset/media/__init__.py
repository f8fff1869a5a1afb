"""Chat data that points at media files (signals, ...) for :class:`~xtuner.model.EncoderLLM`.

``MediaJsonlDataset`` reads JSONL ``messages`` records, a :class:`MediaTokenizeFunction`
subclass per modality turns them into ids, labels and media (``TimeSeriesTokenizeFunction``
for signals), and ``media_collate_fn`` batches them.
"""
from .collate import media_collate_fn
from .dataset import MediaJsonlDataset, read_jsonl
from .loaders import SIGNAL_SUFFIXES, load_signal, signal_info
from .time_series import TS_TOKENS, TimeSeriesTokenizeFunction, encoder_output_length
from .tokenize_fn import MediaTokenizeFunction, add_special_tokens

__all__ = [
    "MediaJsonlDataset",
    "MediaTokenizeFunction",
    "SIGNAL_SUFFIXES",
    "TS_TOKENS",
    "TimeSeriesTokenizeFunction",
    "add_special_tokens",
    "encoder_output_length",
    "load_signal",
    "media_collate_fn",
    "read_jsonl",
    "signal_info",
]
