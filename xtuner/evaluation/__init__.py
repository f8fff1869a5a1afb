"""Evaluation: MMBench, RefCOCO grounding, and what ``xtuner test`` runs from a config."""
from .mmbench import MMBenchData, build_mmbench_prompt, extract_choice, mmbench_accuracy
from .refcoco import box_iou, parse_box, refcoco_accuracy

__all__ = ["MMBenchData", "build_mmbench_prompt", "extract_choice", "mmbench_accuracy",
           "box_iou", "parse_box", "refcoco_accuracy"]
