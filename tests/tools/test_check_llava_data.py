"""``xtuner check-custom-dataset`` on a ``LLaVADataset`` config, and the up-front image check
``LLaVADataset`` makes when training builds it: the same ``file:line`` line for a missing
image, and ``XTUNER_SKIP_BAD_RECORDS=1`` dropping such records instead.

Images are made here with PIL; the tokenizer is the shipped tiny demo one.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xtuner.entry_point import main

CONFIG = """\
from transformers import AutoTokenizer, CLIPImageProcessor

from xtuner.dataset import LLaVADataset
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
from xtuner.demo import TINY_CLIP_PATH, TINY_LLM_PATH
from xtuner.utils import PROMPT_TEMPLATE

train_dataloader = dict(batch_size=1, dataset=dict(
    type=LLaVADataset,
    data_path={data!r},
    image_folder={images!r},
    tokenizer=dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=TINY_LLM_PATH),
    image_processor=dict(type=CLIPImageProcessor.from_pretrained,
                         pretrained_model_name_or_path=TINY_CLIP_PATH),
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna),
    max_length=64,
    pack_to_max_length={pack},
    image_tokens=16))
"""

LONG = " ".join(["a very long answer about the two shapes"] * 12)


def _turns(question: str, answer: str = "A red circle.") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


RECORDS = [
    {"id": 1, "image": "a.png", "conversations": _turns("What is this?\n<image>")},
    {"id": "2", "image": "nope.png", "conversations": _turns("<image>\nWhat is this?")},
    {"id": 3, "image": "bad.png", "conversations": _turns("<image>\nWhat is this?")},
    {"id": 4, "image": ["a.png", "b.png"], "conversations": _turns("<image>\nCompare.")},
    {"id": 5, "conversations": _turns("<image>\nWhat is this?")},
    {"id": 6, "image": ["a.png", "b.png"],
     "conversations": _turns("<image>\n<image>\nDescribe both.", LONG)},
    {"id": 7, "image": "a.png", "conversations": [{"from": "robot", "value": "<image>"},
                                                 {"from": "gpt", "value": "hi"}]},
    {"id": 8, "conversations": _turns("Hello there", "Hi!")},
    {"id": 9, "image": ["b.png", "a.png"],
     "conversations": _turns("<image> left, <image> right: same colour?", "No.")},
]


@pytest.fixture
def llava_data(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(images / "a.png")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(images / "b.png")
    (images / "bad.png").write_bytes(b"not a png at all")
    data = tmp_path / "llava.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return data, images


def _config(tmp_path: Path, data: Path, images: Path, pack: bool = True) -> str:
    path = tmp_path / f"llava_cfg_{pack}.py"
    path.write_text(CONFIG.format(data=str(data), images=str(images), pack=pack))
    return str(path)


def test_llava_records_images_and_lengths_by_file_and_line(tmp_path, llava_data, capsys):
    data, images = llava_data
    code = main(["check-custom-dataset", _config(tmp_path, data, images), "--no-progress"])
    out = capsys.readouterr().out
    f = str(data)
    assert code == 1, out
    problems = [line for line in out.splitlines() if line.startswith(f + ":")]
    assert problems == [
        f"{f}:2: error: missing image: image 'nope.png' is not in the image_folder {images}",
        (f"{f}:3: error: unreadable image: image 'bad.png' cannot be read as an image (cannot "
         f"identify image file '{images / 'bad.png'}')"),
        (f"{f}:4: warning: image count: 2 images but 1 <image> placeholder after the map fn; "
         "the last 1 is not used"),
        (f"{f}:5: error: image count: 1 <image> placeholder after the map fn but 0 images; "
         "each <image> needs its image"),
        f"{f}:6: warning: truncated: 298 tokens; max_length=64 cuts the last 234 (233 trained)",
        (f"{f}:6: error: too long: 94 tokens with 2 images of 16 tokens (62 text tokens) exceed "
         "the row budget max_length + image_tokens = 80; packing cannot place the sample: "
         "shorten it or raise max_length"),
        (f"{f}:7: error: unknown role: conversations[0].from is 'robot'; expected 'human', "
         "'gpt'"),
    ]
    assert "  records read     9\n  kept             4\n" in out
    assert out.rstrip().endswith("FAILED: 5 errors and 2 warnings in 9 records (5 dropped)")
    # mixed `id` (number/string) and `image` (path/list) types are no problem: LLaVADataset
    # normalises them before datasets sees them
    assert "wrong type" not in out
    # a sample with two images keeps both placeholders, in order
    assert "Sample from" in out

    # unpacked, an over-long sample is only a warning
    code = main(["check-custom-dataset", _config(tmp_path, data, images, pack=False),
                 "--no-progress"])
    out = capsys.readouterr().out
    assert f"{f}:6: warning: too long: 94 tokens with 2 images" in out
    assert out.rstrip().endswith("FAILED: 4 errors and 3 warnings in 9 records (4 dropped)")


def test_training_fails_early_with_the_checkers_line(tmp_path, llava_data, capsys,
                                                     monkeypatch):
    from mmengine.config import Config

    from xtuner.registry import BUILDER
    from xtuner.utils.errors import DataError

    monkeypatch.setenv("XTUNER_DATASET_CACHE", "0")
    monkeypatch.delenv("XTUNER_SKIP_BAD_RECORDS", raising=False)
    data, images = llava_data
    cfg_path = _config(tmp_path, data, images, pack=False)
    main(["check-custom-dataset", cfg_path, "--no-progress"])
    checker_lines = capsys.readouterr().out.splitlines()
    missing = next(line for line in checker_lines if ": missing image: " in line)

    ds_cfg = Config.fromfile(cfg_path).train_dataloader.dataset
    with pytest.raises(DataError) as info:
        BUILDER.build(ds_cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"2 bad records in the training data: {missing} (also {data}:7); ")

    # skipped: the two bad records are dropped and counted; the undecodable image is only
    # found when its sample is read (the up-front check looks at file existence), as is a
    # sample with more placeholders than images
    monkeypatch.setenv("XTUNER_SKIP_BAD_RECORDS", "1")
    dataset = BUILDER.build(ds_cfg)
    assert sorted(dataset.text_data["id"]) == ["1", "3", "4", "5", "6", "8", "9"]
    sample = dataset[[i for i, s in enumerate(dataset.text_data) if s["id"] == "9"][0]]
    assert tuple(sample["pixel_values"].shape[:1]) == (2,)
    with pytest.raises(DataError, match="bad.png: cannot read the image"):
        dataset[[i for i, s in enumerate(dataset.text_data) if s["id"] == "3"][0]]
    with pytest.raises(DataError, match="record 5: 1 <image> in the text but 0 image"):
        dataset[[i for i, s in enumerate(dataset.text_data) if s["id"] == "5"][0]]


def test_clean_llava_demo_config_is_ok(capsys):
    code = main(["check-custom-dataset", "demo_tiny_llava_shapes_e12", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert "error:" not in out
    assert out.rstrip().split("\n")[-1].startswith("OK: ")
