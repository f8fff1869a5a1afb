"""RefCOCO grounding evaluation as XTuner v0's ``tools/eval_refcoco.py`` scored it.

The model is asked ``[refer] give me the location of <sentence>`` and should answer
``{<x1><y1><x2><y2>}`` on a 0-100 grid. The four integers in the answer are the predicted
box; it is right when its IoU with the ground truth (normalised by
:func:`~xtuner.dataset.preprocess.refcoco.normalize_bbox`) is above 0.5. IoU counts pixels
inclusively (``x2 - x1 + 1``), and an answer without exactly four integers is wrong, as in v0.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from xtuner.dataset.preprocess.refcoco import normalize_bbox

__all__ = ["INSTRUCTION", "parse_box", "box_iou", "refcoco_accuracy"]

INSTRUCTION = "[refer] give me the location of {}"  # v0's RefCOCOJsonEvalDataset


def parse_box(answer: str) -> list[int] | None:
    """The ``[x1, y1, x2, y2]`` an answer names (all its integers, if exactly four)."""
    numbers = [int(x) for x in re.findall(r"\d+", answer)]
    return numbers if len(numbers) == 4 else None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes, counting edges inclusively (v0)."""
    x1, y1, x2, y2 = a
    x3, y3, x4, y4 = b
    inter = (max(0, min(x2, x4) - max(x1, x3) + 1) * max(0, min(y2, y4) - max(y1, y3) + 1))
    union = (x2 - x1 + 1) * (y2 - y1 + 1) + (x4 - x3 + 1) * (y4 - y3 + 1) - inter
    return inter / union if union > 0 else 0.0


def refcoco_accuracy(answers: Iterable[Mapping], threshold: float = 0.5) -> dict:
    """``{"accuracy", "right", "total", "unparsed"}`` of answers (``ans`` plus the sample's
    ``bbox`` in COCO pixels ``[x, y, w, h]``, ``height`` and ``width``)."""
    right = total = unparsed = 0
    for answer in answers:
        total += 1
        box = parse_box(answer["ans"])
        if box is None:
            unparsed += 1
            continue
        truth = normalize_bbox(answer["bbox"], answer["height"], answer["width"])
        right += box_iou(box, truth) > threshold
    return {"accuracy": right / total if total else 0.0, "right": right, "total": total,
            "unparsed": unparsed}
