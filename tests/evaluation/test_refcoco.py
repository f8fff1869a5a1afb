"""RefCOCO scoring: box parsing, IoU and accuracy, checked against v0's ``eval_iou``."""
from __future__ import annotations

import re

import pytest
from v0_tools import v0_definitions

from xtuner.evaluation.refcoco import box_iou, parse_box, refcoco_accuracy

# (answer, COCO bbox [x, y, w, h], height, width); ground truth on the 0-100 grid in comments.
ANSWERS = [
    ("{<10><10><60><60>}", [6, 4, 30, 20], 40, 60),       # exact: [10, 10, 60, 60]
    ("{<12><8><58><61>}", [6, 4, 30, 20], 40, 60),        # close
    ("{<40><40><90><90>}", [6, 4, 30, 20], 40, 60),       # IoU ~ 0.15
    ("A red circle.", [0, 0, 10, 10], 20, 20),            # no box
    ("<1><2><3>", [0, 0, 10, 10], 20, 20),                # three numbers
    ("{<0><0><50><50>}", [0, 0, 10, 10], 20, 20),         # exact: [0, 0, 50, 50]
    ("{<0><0><49><70>}", [0, 0, 10, 10], 20, 20),         # IoU 0.7
    ("{<0><0><50><101>}", [0, 0, 10, 10], 20, 20),        # IoU exactly 0.5: wrong (v0 "> 0.5")
]  # fmt: skip


def _records():
    return [{"ans": a, "bbox": b, "height": h, "width": w, "id": str(i)}
            for i, (a, b, h, w) in enumerate(ANSWERS)]


def test_parse_box():
    assert parse_box("{<10><20><30><40>}") == [10, 20, 30, 40]
    assert parse_box("A red circle.") is None
    assert parse_box("<1><2><3><4><5>") is None


def test_iou_counts_edges_inclusively():
    assert box_iou([0, 0, 9, 9], [0, 0, 9, 9]) == 1.0
    assert box_iou([0, 0, 9, 9], [10, 10, 19, 19]) == 0.0
    assert box_iou([0, 0, 50, 50], [0, 0, 50, 101]) == pytest.approx(0.5)


def test_accuracy_of_known_predictions():
    result = refcoco_accuracy(_records())
    assert result == {"accuracy": 4 / 8, "right": 4, "total": 8, "unparsed": 2}


def test_accuracy_equals_v0_eval_iou(capsys):
    v0 = v0_definitions("dataset/refcoco_json.py", ["RefCOCOJsonDataset"],
                        {"LLaVADataset": object})
    # eval_iou reads normalize_bbox from RefCOCOJsonEvalDataset, a subclass that keeps it.
    ns = {"re": re, "RefCOCOJsonEvalDataset": v0["RefCOCOJsonDataset"]}
    eval_iou = v0_definitions("tools/eval_refcoco.py", ["eval_iou"], ns)["eval_iou"]
    assert refcoco_accuracy(_records())["accuracy"] == eval_iou(_records())
    assert capsys.readouterr().out.count("Error format sample") == 2
