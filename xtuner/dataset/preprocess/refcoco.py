"""``xtuner preprocess refcoco``: RefCOCO/RefCOCO+/RefCOCOg train refs to one JSON (v0).

Reads, for each of ``refcoco`` (splitBy ``unc``), ``refcoco+`` (``unc``) and ``refcocog``
(``umd``), ``ANN_PATH/<dataset>/refs(<splitBy>).p`` and ``ANN_PATH/<dataset>/instances.json``
(the layout of the official refer annotations), takes the refs of the ``train`` split and
writes ``SAVE_PATH/train.json``: a list of ``{id, image, sents, bbox, height, width}``, one
per referring sentence, as XTuner v0's ``tools/data_preprocess/convert_refcoco.py`` did:

* ``id`` = ``<dataset>-<splitBy>-<12-digit image id>-<sentence with spaces as _>``; within a
  dataset the first of duplicate ids is kept (v0), across datasets all are kept;
* ``image`` = ``coco/train2017/<12-digit image id>.jpg``;
* ``bbox`` = the referred annotation's COCO box ``[x, y, w, h]`` in pixels;
* ``height``/``width`` read from ``IMAGE_PATH/<12-digit image id>.jpg``.

``RefCOCOJsonDataset`` (training) turns these into ``{<x1><y1><x2><y2>}`` answers on a
0-100 grid (:func:`normalize_bbox`). ``refs(*).p`` is a Python pickle: convert only
annotation files from a source you trust.
"""
from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path

from xtuner.utils.errors import DataError, UsageError

__all__ = ["DEFAULT_DATASETS", "normalize_bbox", "refcoco_train_items", "convert_refcoco",
           "main"]

DEFAULT_DATASETS = (("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd"))


def normalize_bbox(bbox: Sequence[float], height: int, width: int) -> list[int]:
    """COCO ``[x, y, w, h]`` in pixels to v0's ``[x1, y1, x2, y2]`` on a 0-100 integer grid."""
    x, y, w, h = bbox
    corners = [x / width, y / height, (x + w) / width, (y + h) / height]
    return [int(c * 100) for c in corners]


def _image_size(image_path: Path, image_id: str, cache: dict) -> tuple[int, int]:
    if image_id not in cache:
        from PIL import Image

        file = image_path / f"{image_id}.jpg"
        if not file.is_file():
            raise DataError(f"image not found: {file} (--image-path should be the folder of "
                            "COCO train2017 images, named <12-digit id>.jpg)")
        with Image.open(file) as image:  # reads the header only
            cache[image_id] = (image.height, image.width)
    return cache[image_id]


def refcoco_train_items(ann_path: str | Path, image_path: str | Path, dataset: str = "refcoco",
                        split_by: str = "unc", _sizes: dict | None = None) -> list[dict]:
    """The ``train`` refs of one dataset as v0's records (duplicate ids: first kept)."""
    ann_dir = Path(ann_path) / dataset
    ref_file = ann_dir / f"refs({split_by}).p"
    instances_file = ann_dir / "instances.json"
    for file in (ref_file, instances_file):
        if not file.is_file():
            raise DataError(f"{dataset}: {file} not found (--ann-path should hold "
                            f"{dataset}/refs({split_by}).p and {dataset}/instances.json; "
                            "--datasets picks which datasets to convert)")
    try:
        with open(ref_file, "rb") as f:
            refs = pickle.load(f)  # noqa: S301 - the official format; see the module doc
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"{ref_file}: not a readable refs pickle ({exc})") from None
    try:
        with open(instances_file, encoding="utf-8") as f:
            instances = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{instances_file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    boxes = {ann["id"]: ann["bbox"] for ann in instances.get("annotations", [])}
    sizes = {} if _sizes is None else _sizes
    items: dict[str, dict] = {}
    for ref in refs:
        if ref.get("split") != "train":
            continue
        if ref["ann_id"] not in boxes:
            raise DataError(f"{ref_file}: ref {ref.get('ref_id')} points at annotation "
                            f"{ref['ann_id']}, which {instances_file} does not have")
        image_id = f"{ref['image_id']:0>12}"
        height, width = _image_size(Path(image_path), image_id, sizes)
        for sentence in ref["sentences"]:
            sent = sentence["raw"]
            data_id = f"{dataset}-{split_by}-{image_id}-{'_'.join(sent.split(' '))}"
            items.setdefault(data_id, {
                "id": data_id,
                "image": f"coco/train2017/{image_id}.jpg",
                "sents": sent,
                "bbox": boxes[ref["ann_id"]],
                "height": height,
                "width": width,
            })
    return list(items.values())


def convert_refcoco(ann_path: str | Path, image_path: str | Path, save_path: str | Path,
                    datasets: Sequence[tuple[str, str]] = DEFAULT_DATASETS) -> Path:
    """Write ``save_path/train.json`` from the train refs of ``datasets``; return its path."""
    items: list[dict] = []
    sizes: dict = {}
    for dataset, split_by in datasets:
        items.extend(refcoco_train_items(ann_path, image_path, dataset, split_by, sizes))
    out = Path(save_path) / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(items, f, indent=4)
    return out


def parse_args(argv: Sequence[str] | None):
    import argparse

    from xtuner.utils.cli import ArgumentParser

    parser = ArgumentParser(prog="xtuner preprocess refcoco", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ann-path", default="data/refcoco_annotations",
                        help="folder holding refcoco/, refcoco+/, refcocog/ (default: "
                        "%(default)s)")
    parser.add_argument("--image-path", default="data/llava_data/llava_images/coco/train2017",
                        help="COCO train2017 image folder (default: %(default)s)")
    parser.add_argument("--save-path", default="./",
                        help="folder that receives train.json (default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", metavar="NAME:SPLITBY",
                        default=[f"{d}:{s}" for d, s in DEFAULT_DATASETS],
                        help="datasets to convert (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    datasets = []
    for spec in args.datasets:
        name, sep, split_by = spec.partition(":")
        if not sep or not name or not split_by:
            raise UsageError(f"--datasets {spec!r}: expected NAME:SPLITBY, e.g. refcoco:unc")
        datasets.append((name, split_by))
    out = convert_refcoco(args.ann_path, args.image_path, args.save_path, datasets)
    items = json.loads(out.read_text(encoding="utf-8"))
    print(f"save to {out} with {len(items)} items.")
    if items:
        print(items[0])
    return 0
