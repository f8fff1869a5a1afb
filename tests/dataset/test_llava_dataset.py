"""``LLaVADataset``: LLaVA records with images made in code."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.llava import LLaVADataset
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
from xtuner.utils.constants import IMAGE_TOKEN_INDEX
from xtuner.utils.errors import DataError
from xtuner.utils.templates import PROMPT_TEMPLATE

SIZE = 32


def _processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": SIZE},
                              crop_size={"height": SIZE, "width": SIZE})


@pytest.fixture
def llava_data(tmp_path):
    Image.new("RGB", (60, 40), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("RGB", (SIZE, SIZE), (0, 0, 255)).save(tmp_path / "blue.png")
    records = [
        {"id": 1, "image": "red.png", "conversations": [
            {"from": "human", "value": "What colour is this?\n<image>"},
            {"from": "gpt", "value": "Red."}]},
        {"id": 2, "conversations": [
            {"from": "human", "value": "Say hello."}, {"from": "gpt", "value": "Hello."}]},
        {"id": 3, "image": ["red.png", "blue.png"], "conversations": [
            {"from": "human", "value": "<image> first, then <image>: which is blue?"},
            {"from": "gpt", "value": "The second."}]},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    return tmp_path, path


def _dataset(llava_data, tokenizer, **kw):
    folder, path = llava_data
    return LLaVADataset(image_folder=str(folder), image_processor=_processor(),
                        data_path=str(path), tokenizer=tokenizer, max_length=256,
                        dataset_map_fn=llava_map_fn,
                        template_map_fn=dict(type=template_map_fn_factory,
                                             template=PROMPT_TEMPLATE.vicuna), **kw)


def test_images_per_sample_and_text_only(llava_data, bos_tokenizer):
    ds = _dataset(llava_data, bos_tokenizer, pad_image_to_square=True)
    assert len(ds) == 3
    counts = [ds[i]["input_ids"].count(IMAGE_TOKEN_INDEX) for i in range(3)]
    shapes = [tuple(ds[i]["pixel_values"].shape) for i in range(3)]
    assert counts == [1, 0, 2]
    assert shapes == [(1, 3, SIZE, SIZE), (0, 3, SIZE, SIZE), (2, 3, SIZE, SIZE)]
    assert ds.modality_length[1] < 0 < ds.modality_length[0]


def test_pad_to_square_uses_the_mean_colour(llava_data, bos_tokenizer):
    """A 60x40 red image padded to a square with the processor's mean colour: after
    normalisation the padding is ~0 and the image stays red."""
    pixels = _dataset(llava_data, bos_tokenizer, pad_image_to_square=True)[0]["pixel_values"][0]
    assert pixels[:, 0, SIZE // 2].abs().max() < 0.02  # top padding band
    red = pixels[:, SIZE // 2, SIZE // 2]
    assert red[0] > 1 and red[1] < 0 and red[2] < 0
    unpadded = _dataset(llava_data, bos_tokenizer)[0]["pixel_values"][0]
    assert unpadded[:, 0, SIZE // 2].abs().max() > 1  # center crop: red all over


def test_collate_orders_images_by_placeholder(llava_data, bos_tokenizer):
    ds = _dataset(llava_data, bos_tokenizer)
    batch = default_collate_fn([ds[0], ds[1], ds[2]], return_hf_format=True)
    assert batch["pixel_values"].shape == (3, 3, SIZE, SIZE)
    torch.testing.assert_close(batch["pixel_values"][0], ds[0]["pixel_values"][0])
    torch.testing.assert_close(batch["pixel_values"][1:], ds[2]["pixel_values"])
    assert int((batch["input_ids"] == IMAGE_TOKEN_INDEX).sum()) == 3


def test_packing_counts_image_features(llava_data, bos_tokenizer):
    tokens = 16
    ds = _dataset(llava_data, bos_tokenizer, pack_to_max_length=True, image_tokens=tokens)
    lengths = [len(s["input_ids"]) + (tokens - 1) * s["input_ids"].count(IMAGE_TOKEN_INDEX)
               for s in ds.text_data]
    assert len(ds) == 1  # everything fits one row of 256 + 16
    row = ds[0]
    assert sorted(b - a for a, b in zip(row["cumulative_len"], row["cumulative_len"][1:])) == \
        sorted(len(s["input_ids"]) for s in ds.text_data)
    assert row["pixel_values"].shape[0] == row["input_ids"].count(IMAGE_TOKEN_INDEX) == 3
    assert sum(lengths) <= 256 + tokens


def test_missing_image_is_one_line(llava_data, bos_tokenizer):
    folder, _ = llava_data
    ds = _dataset(llava_data, bos_tokenizer)
    (folder / "blue.png").unlink()
    with pytest.raises(DataError, match=r"blue\.png: cannot read the image"):
        ds[2]


def test_more_placeholders_than_images(tmp_path, bos_tokenizer):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "d.json").write_text(json.dumps([{"id": "x", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image> and <image>"}, {"from": "gpt", "value": "ok"}]}]))
    ds = LLaVADataset(image_folder=str(tmp_path), image_processor=_processor(),
                      data_path=str(tmp_path / "d.json"), tokenizer=bos_tokenizer,
                      dataset_map_fn=lambda r: {"conversation": [
                          {"input": r["conversations"][0]["value"], "output": "ok"}]})
    with pytest.raises(DataError, match="record x: 2 <image> in the text but 1 image"):
        ds[0]


def test_single_image_records_keep_v0s_one_placeholder(tmp_path, bos_tokenizer):
    """v0 data: one image per record, even when the text repeats <image>."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "d.json").write_text(json.dumps([{"id": 7, "image": "a.png", "conversations": [
        {"from": "human", "value": "<image> twice <image>"}, {"from": "gpt", "value": "ok"}]}]))
    ds = LLaVADataset(image_folder=str(tmp_path), image_processor=_processor(),
                      data_path=str(tmp_path / "d.json"), tokenizer=bos_tokenizer,
                      dataset_map_fn=llava_map_fn)
    assert ds[0]["input_ids"].count(IMAGE_TOKEN_INDEX) == 1
    assert ds[0]["pixel_values"].shape[0] == 1


def test_a_sample_too_long_for_a_packed_row_is_one_line(llava_data, bos_tokenizer):
    """Text within max_length, but its two images of 300 features each do not fit a row."""
    with pytest.raises(DataError, match=r"1 sample\(s\) longer than a packed row of 556 "
                                        r"tokens once each image counts as 300"):
        _dataset(llava_data, bos_tokenizer, pack_to_max_length=True, image_tokens=300)
