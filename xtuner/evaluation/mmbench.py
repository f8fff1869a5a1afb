"""MMBench: the official TSV, v0's prompt, answer matching and circular evaluation.

The TSV has one row per question: ``index``, ``question``, ``hint`` (optional), options
``A``..``D`` (absent ones empty), ``category`` (``l2-category`` in newer files), ``answer``
(dev sets only) and ``image`` (base64; a row whose ``image`` is shorter than 16 characters
holds the ``index`` of the row whose picture it shares). Circular evaluation: the rows with
``index >= 1_000_000`` repeat a question (``index % 1_000_000``) with the options rotated; a
question counts as right only when every copy is answered right (XTuner v0 and the official
evaluation).
"""
from __future__ import annotations

import base64
import io
import re
import string
from collections.abc import Iterable, Mapping
from pathlib import Path

from xtuner.utils.errors import DataError

__all__ = ["CIRCULAR_OFFSET", "MMBenchData", "build_mmbench_prompt", "extract_choice",
           "mmbench_accuracy", "ABBRS"]

CIRCULAR_OFFSET = 1_000_000
# v0's short names of MMBench's categories in the printed table.
ABBRS = {
    "coarse_perception": "CP",
    "finegrained_perception (instance-level)": "FP-S",
    "finegrained_perception (cross-instance)": "FP-C",
    "logic_reasoning": "LR",
    "relation_reasoning": "RR",
    "attribute_reasoning": "AR",
    "sketch_reasoning": "Sketch Reasoning",
    "scenery_building": "Scenery & Building",
    "food_clothes": "Food & Clothes",
    "historical_figure": "Historical Figure",
    "traditional_show": "Traditional Show",
    "calligraphy_painting": "Calligraphy Painting",
    "cultural_relic": "Cultural Relic",
}
_REQUIRED = ("index", "question", "image")


class MMBenchData:
    """The rows of an MMBench TSV, as v0's ``MMBenchDataset`` read them (pandas, ``sep='\\t'``).

    Args:
        path: the TSV file.

    Raises:
        DataError: the file is missing or lacks a required column, or an image is unreadable
            (named by the row's ``index``).
    """

    def __init__(self, path: str | Path):
        import pandas as pd

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"MMBench file not found: {self.path}")
        try:
            self.df = pd.read_csv(self.path, sep="\t")
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"{self.path}: not a readable TSV ({exc})") from None
        missing = [c for c in _REQUIRED if c not in self.df.columns]
        if missing:
            raise DataError(f"{self.path}: no column {', '.join(map(repr, missing))}; an "
                            "MMBench TSV has index, question, A..D, category, image")
        self.has_answers = "answer" in self.df.columns
        self.has_l2_category = "l2-category" in self.df.columns
        self._image_by_index = dict(zip(self.df["index"], self.df["image"]))

    def __len__(self) -> int:
        return len(self.df)

    def _value(self, row, key):
        import pandas as pd

        value = row.get(key)
        return None if value is None or pd.isna(value) else value

    def image(self, value, index):
        """The PIL image of a row (following index references, as v0)."""
        from PIL import Image, UnidentifiedImageError

        seen = 0
        while isinstance(value, (int, float)) or len(str(value)) < 16:
            seen += 1
            if seen > 4 or int(value) not in self._image_by_index:
                raise DataError(f"{self.path}: row index {index}: image refers to index "
                                f"{value}, which has no image")
            value = self._image_by_index[int(value)]
        try:
            return Image.open(io.BytesIO(base64.b64decode(value))).convert("RGB")
        except (ValueError, UnidentifiedImageError) as exc:
            raise DataError(f"{self.path}: row index {index}: image is not a base64 picture "
                            f"({exc})") from None

    def __getitem__(self, idx: int) -> dict:
        row = self.df.iloc[idx]
        index = int(row["index"])
        options = {c: self._value(row, c) for c in string.ascii_uppercase
                   if self._value(row, c) is not None}
        sample = {
            "index": index,
            "img": self.image(row["image"], index),
            "question": row["question"],
            "answer": self._value(row, "answer") if self.has_answers else None,
            "category": self._value(row, "category"),
            "options_dict": options,
            "options": "".join(f"{k}. {v}\n" for k, v in options.items()),
            "context": self._value(row, "hint"),
        }
        if self.has_l2_category:
            sample["l2-category"] = self._value(row, "l2-category")
        return sample


def build_mmbench_prompt(sample: Mapping, template: Mapping | None = None,
                         bot_name: str = "BOT") -> str:
    """v0's text: ``<image>\\n[hint\\n]question\\noptions`` + the answer instruction, in the
    template's ``INSTRUCTION`` when one is given."""
    text = sample["question"] + "\n" + sample["options"]
    if sample.get("context") is not None:
        text = sample["context"] + "\n" + text
    text = "<image>\n" + text
    if re.search("[\u4e00-\u9fff]", text):
        text += "请直接回答选项字母。"
    else:
        text += "Answer with the option's letter from the given choices directly."
    if template:
        return template["INSTRUCTION"].format(input=text, round=1, bot_name=bot_name)
    return text


def _normal(text: str) -> str:
    return re.sub(r"[\s.,;:!?'\"]+", " ", str(text)).strip().lower()


def extract_choice(prediction: str, options: Mapping[str, str] | None = None,
                   v0_only: bool = False) -> str:
    """The option letter a prediction names.

    v0: the first run of capitals A-D (``re.search(r"([A-D]+)", prediction)``), "" if none.
    Before that, unless ``v0_only``, the option texts are tried (as the official evaluation's
    ``can_infer_text`` does): an answer that *is* one option's text, else one that contains
    exactly one option's text as whole words, picks that option (ignoring case and
    punctuation). v0 alone reads "A red circle." as "A" whatever the options are.
    """
    if options and not v0_only:
        said = _normal(prediction)
        texts = {k: _normal(v) for k, v in options.items() if _normal(v)}
        exact = [k for k, v in texts.items() if v == said]
        if len(exact) == 1:
            return exact[0]
        inside = [k for k, v in texts.items() if re.search(rf"(^| ){re.escape(v)}( |$)", said)]
        if len(inside) == 1:
            return inside[0]
    match = re.search(r"([A-D]+)", str(prediction))
    return match.group(1) if match else ""


def mmbench_accuracy(results: Iterable[Mapping], data: MMBenchData,
                     v0_only: bool = False) -> dict[str, float]:
    """``{"Average": acc, <category>: acc, ...}`` (fractions) with circular evaluation.

    Args:
        results: dicts with ``index`` and ``prediction`` (and the options ``A``.. for
            :func:`extract_choice`).
        data: the TSV the results answer (its ``answer`` and category columns are used).
        v0_only: letter matching exactly as v0 (see :func:`extract_choice`).
    """
    if not data.has_answers:
        raise DataError(f"{data.path} has no 'answer' column (a test split): nothing to score")
    df = data.df
    answers = dict(zip(df["index"].astype(int), df["answer"]))
    group = "l2-category" if data.has_l2_category else "category"
    groups = dict(zip(df["index"].astype(int), df[group])) if group in df.columns else {}
    by_question: dict[int, list[Mapping]] = {}
    for result in sorted(results, key=lambda r: int(r["index"])):
        by_question.setdefault(int(result["index"]) % CIRCULAR_OFFSET, []).append(result)
    hits: dict[int, int] = {}
    for question, copies in by_question.items():
        if question not in answers:  # only circular copies came back: v0 scores main rows
            continue
        hits[question] = int(all(
            extract_choice(r["prediction"], {k: r[k] for k in "ABCD" if r.get(k) is not None},
                           v0_only) == answers[int(r["index"])]
            for r in copies))
    if not hits:
        return {"Average": 0.0}
    out = {"Average": sum(hits.values()) / len(hits)}
    per: dict[str, list[int]] = {}
    for question, hit in hits.items():
        if question in groups:
            per.setdefault(str(groups[question]), []).append(hit)
    for name in sorted(per):
        out[ABBRS.get(name, name)] = sum(per[name]) / len(per[name])
    return out
