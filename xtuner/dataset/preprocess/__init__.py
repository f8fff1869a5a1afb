"""Raw-data converters behind ``xtuner preprocess arxiv|refcoco`` (XTuner v0's data tools)."""
from .arxiv import filter_arxiv, read_arxiv_metadata
from .refcoco import convert_refcoco, normalize_bbox

__all__ = ["filter_arxiv", "read_arxiv_metadata", "convert_refcoco", "normalize_bbox"]
