"""``xtuner preprocess refcoco``: v0's train.json from refer annotations made in code."""
from __future__ import annotations

import json
import pickle

import pytest
from PIL import Image

from xtuner.dataset.preprocess.refcoco import normalize_bbox
from xtuner.entry_point import main

SIZES = {9: (40, 60), 581857: (30, 50)}  # image id -> (height, width)


def _dataset(root, name, split_by, refs, anns):
    folder = root / name
    folder.mkdir(parents=True)
    with open(folder / f"refs({split_by}).p", "wb") as f:
        pickle.dump(refs, f)
    (folder / "instances.json").write_text(json.dumps(
        {"images": [], "categories": [], "annotations": anns}))


def _ref(ref_id, ann_id, image_id, split, *sents):
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": 1,
            "split": split, "sentences": [{"raw": s, "sent": s.lower(), "sent_id": i,
                                           "tokens": s.split()} for i, s in enumerate(sents)]}


@pytest.fixture
def refer(tmp_path):
    images = tmp_path / "train2017"
    images.mkdir()
    for image_id, (h, w) in SIZES.items():
        Image.new("RGB", (w, h)).save(images / f"{image_id:012d}.jpg")
    ann = tmp_path / "ann"
    anns = [{"id": 1, "bbox": [6, 4, 30, 20]}, {"id": 2, "bbox": [0.5, 1.5, 10, 10]}]
    _dataset(ann, "refcoco", "unc", [
        _ref(10, 1, 9, "train", "left dog", "the dog", "left dog"),  # duplicate id: first kept
        _ref(11, 2, 581857, "val", "val ref"),
        _ref(12, 2, 581857, "train", "man in red"),
    ], anns)
    _dataset(ann, "refcoco+", "unc", [_ref(20, 1, 9, "train", "left dog")], anns)
    _dataset(ann, "refcocog", "umd", [_ref(30, 2, 581857, "testA", "x")], anns)
    return tmp_path, ann, images


def test_train_json_has_v0_records(refer, capsys):
    tmp_path, ann, images = refer
    out = tmp_path / "out"
    assert main(["preprocess", "refcoco", "--ann-path", str(ann), "--image-path", str(images),
                 "--save-path", str(out)]) == 0
    items = json.loads((out / "train.json").read_text())
    dog = {"image": "coco/train2017/000000000009.jpg", "bbox": [6, 4, 30, 20],
           "height": 40, "width": 60}
    assert items == [
        {"id": "refcoco-unc-000000000009-left_dog", **dog, "sents": "left dog"},
        {"id": "refcoco-unc-000000000009-the_dog", **dog, "sents": "the dog"},
        {"id": "refcoco-unc-000000581857-man_in_red", "image": "coco/train2017/000000581857.jpg",
         "sents": "man in red", "bbox": [0.5, 1.5, 10, 10], "height": 30, "width": 50},
        {"id": "refcoco+-unc-000000000009-left_dog", **dog, "sents": "left dog"},
    ]
    # v0 writes with indent=4 and says how many items it saved.
    assert (out / "train.json").read_text() == json.dumps(items, indent=4)
    assert f"save to {out / 'train.json'} with 4 items." in capsys.readouterr().out


def test_normalize_bbox_is_v0s_grid():
    assert normalize_bbox([6, 4, 30, 20], 40, 60) == [10, 10, 60, 60]
    assert normalize_bbox([0.5, 1.5, 10, 10], 30, 50) == [1, 5, 21, 38]


def test_missing_dataset_folder_is_one_line(refer, capsys):
    tmp_path, ann, images = refer
    assert main(["preprocess", "refcoco", "--ann-path", str(ann), "--image-path", str(images),
                 "--save-path", str(tmp_path), "--datasets", "refclef:unc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refs(unc).p not found" in err[0] and "--datasets" in err[0]


def test_missing_image_is_named(refer, capsys):
    tmp_path, ann, images = refer
    (images / "000000000009.jpg").unlink()
    assert main(["preprocess", "refcoco", "--ann-path", str(ann), "--image-path", str(images),
                 "--save-path", str(tmp_path), "--datasets", "refcoco:unc"]) == 2
    assert "000000000009.jpg" in capsys.readouterr().err
