"""Evaluation: MMBench, RefCOCO grounding, MMLU, and what ``xtuner test`` runs from a config.

``from xtuner.evaluation import MMLUMetric`` is v0's import path. The torch/mmengine parts
(``MMLUMetric``, ``mmlu_collate_fn``) load on first use, so the CLI's ``-h`` stays quick.
"""
from .mmbench import MMBenchData, build_mmbench_prompt, extract_choice, mmbench_accuracy
from .refcoco import box_iou, parse_box, refcoco_accuracy

__all__ = ["MMBenchData", "build_mmbench_prompt", "extract_choice", "mmbench_accuracy",
           "MMLUMetric", "mmlu_collate_fn", "box_iou", "parse_box", "refcoco_accuracy"]


def __getattr__(name: str):
    if name in ("MMLUMetric", "mmlu_collate_fn"):
        from . import mmlu

        return getattr(mmlu, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
