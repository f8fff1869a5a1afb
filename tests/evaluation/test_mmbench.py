"""MMBench: reading the TSV, v0's prompt, answer letters and circular accuracy (v0's own
``MMBenchDataset.eval_result`` as the oracle)."""
from __future__ import annotations

import base64
import io
import re
import string

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from v0_tools import v0_definitions

from xtuner.evaluation.mmbench import (
    MMBenchData,
    build_mmbench_prompt,
    extract_choice,
    mmbench_accuracy,
)
from xtuner.utils.errors import DataError
from xtuner.utils.templates import PROMPT_TEMPLATE


def _b64(colour) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _row(index, answer, category, image, hint=None, l2=None, d="four"):
    row = {"index": index, "question": f"q{index % 1_000_000}?", "hint": hint,
           "A": "one", "B": "two", "C": "three", "D": d, "answer": answer,
           "category": category, "image": image}
    if l2 is not None:
        row["l2-category"] = l2
    return row


ROWS = [
    _row(0, "A", "logic_reasoning", _b64("red"), hint="Look closely."),
    _row(1, "B", "logic_reasoning", "0"),                   # shares row 0's picture
    _row(2, "C", "attribute_reasoning", _b64("blue"), d=None),
    _row(1_000_000, "D", "logic_reasoning", "0"),           # circular copies of 0
    _row(2_000_000, "C", "logic_reasoning", "0"),
    _row(1_000_001, "C", "logic_reasoning", "0"),           # circular copy of 1
]
PREDICTIONS = {0: "A", 1: "B", 2: "three", 1_000_000: "D.", 2_000_000: "C", 1_000_001: "A"}


@pytest.fixture
def tsv(tmp_path):
    path = tmp_path / "dev.tsv"
    pd.DataFrame(ROWS).to_csv(path, sep="\t", index=False)
    return path


def test_rows_as_v0_read_them(tsv):
    data = MMBenchData(tsv)
    assert len(data) == 6 and data.has_answers and not data.has_l2_category
    first, second, third = data[0], data[1], data[2]
    assert first["context"] == "Look closely." and second["context"] is None
    assert first["options"] == "A. one\nB. two\nC. three\nD. four\n"
    assert third["options_dict"] == {"A": "one", "B": "two", "C": "three"}
    assert second["img"].getpixel((0, 0)) == (255, 0, 0)  # the picture of index 0
    assert third["img"].size == (8, 6)


def test_prompt_is_v0s(tsv):
    data = MMBenchData(tsv)
    assert build_mmbench_prompt(data[0]) == (
        "<image>\nLook closely.\nq0?\nA. one\nB. two\nC. three\nD. four\n"
        "Answer with the option's letter from the given choices directly.")
    vicuna = build_mmbench_prompt(data[1], PROMPT_TEMPLATE.vicuna)
    assert vicuna == PROMPT_TEMPLATE.vicuna["INSTRUCTION"].format(
        input="<image>\nq1?\nA. one\nB. two\nC. three\nD. four\n"
              "Answer with the option's letter from the given choices directly.", round=1)
    chinese = dict(data[1], question="这是什么?")
    assert build_mmbench_prompt(chinese).endswith("D. four\n请直接回答选项字母。")


@pytest.mark.parametrize("prediction, v0_only, expected", [
    ("B", False, "B"), ("The answer is C.", False, "C"), ("none", False, ""),
    ("A red circle.", True, "A"),                 # v0 reads the article as the letter
    ("A red circle.", False, "B"),                # the only option named in the answer
    ("red", False, "B"), ("Red!", False, "B"),
    ("red or blue", False, ""),                   # two options named, no capital A-D
])  # fmt: skip
def test_extract_choice(prediction, v0_only, expected):
    options = {"A": "blue", "B": "red", "C": "green"}
    assert extract_choice(prediction, options, v0_only) == expected


def _v0_eval_result(tsv, results):
    """v0's MMBenchDataset.eval_result on the same TSV and results."""
    ns = {"pd": pd, "np": np, "re": re, "string": string, "master_only": lambda f: f,
          "decode_base64_to_image": None, "Dataset": object, "print": lambda *a: None}
    from rich.console import Console
    from rich.table import Table

    ns.update(Console=Console, Table=Table)
    cls = v0_definitions("tools/mmbench.py", ["MMBenchDataset"], ns)["MMBenchDataset"]
    return cls(str(tsv)).eval_result(pd.DataFrame(results), show=False)


def _results(tsv, predictions):
    data = MMBenchData(tsv)
    out = []
    for i in range(len(data)):
        s = data[i]
        out.append({"question": s["question"], **s["options_dict"],
                    "prediction": predictions[s["index"]], "category": s["category"],
                    "index": s["index"], "answer": s["answer"]})
    return out


def test_circular_accuracy_equals_v0(tsv):
    results = _results(tsv, PREDICTIONS)
    ours = mmbench_accuracy(results, MMBenchData(tsv), v0_only=True)
    # Question 0: all three copies right; 1: its copy wrong; 2: "three" has no letter (v0).
    assert ours == {"Average": 1 / 3, "AR": 0.0, "LR": 0.5}
    assert ours == pytest.approx(_v0_eval_result(tsv, results))


def test_option_text_matching_counts_text_answers(tsv):
    results = _results(tsv, PREDICTIONS)
    assert mmbench_accuracy(results, MMBenchData(tsv))["Average"] == pytest.approx(2 / 3)


def test_l2_category_groups_like_v0(tmp_path):
    rows = [dict(r, **{"l2-category": "x" if r["index"] % 2 else "y"}) for r in ROWS]
    path = tmp_path / "l2.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    results = _results(path, PREDICTIONS)
    ours = mmbench_accuracy(results, MMBenchData(path), v0_only=True)
    assert set(ours) == {"Average", "x", "y"}
    assert ours == pytest.approx(_v0_eval_result(path, results))


def test_bad_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        MMBenchData(tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    pd.DataFrame([{"index": 0, "question": "q"}]).to_csv(bad, sep="\t", index=False)
    with pytest.raises(DataError, match="no column 'image'"):
        MMBenchData(bad)
    broken = tmp_path / "broken.tsv"
    pd.DataFrame([_row(0, "A", "c", "x" * 20)]).to_csv(broken, sep="\t", index=False)
    with pytest.raises(DataError, match="row index 0: image is not a base64 picture"):
        MMBenchData(broken)[0]
