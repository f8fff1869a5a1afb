"""``LLaVADataset``: LLaVA JSON/JSONL conversations with images (XTuner v0's API).

A record is ``{"id", "image": "a.jpg" | ["a.jpg", "b.jpg"] (optional), "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}]}``; image
paths are relative to ``image_folder``. Text goes through the usual pipeline
(:func:`process_hf_dataset` with ``with_image_token=True``: each ``<image>`` becomes one
``IMAGE_TOKEN_INDEX`` placeholder); images are loaded and processed when a sample is read.
Records without ``image`` are text-only samples.

Beyond v0: several images per sample (the i-th ``<image>`` is the i-th file), and
``pack_to_max_length=True`` packs samples (with their images) into rows for varlen attention;
the row budget counts each image as the ``image_tokens`` features it becomes.
"""
from __future__ import annotations

import json
import os.path as osp

import torch
from mmengine import print_log
from PIL import Image
from torch.utils.data import Dataset

from xtuner.registry import BUILDER
from xtuner.utils.constants import IMAGE_TOKEN_INDEX
from xtuner.utils.errors import ConfigError, DataError

from .packing import PackingStats, plan_packed_rows

__all__ = ["LLaVADataset", "expand2square", "load_llava_records", "image_paths"]


def expand2square(image: Image.Image, background_color) -> Image.Image:
    """Pad ``image`` to a square with ``background_color``, centred (v0's padding)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background_color)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def load_llava_records(data_path: str) -> list[dict]:
    """Read a LLaVA ``.json`` (a list) or ``.jsonl`` file; ids become strings (v0)."""
    if not osp.exists(data_path):
        raise DataError(f"{data_path}: no such file")
    with open(data_path, encoding="utf-8") as f:
        if data_path.endswith(".jsonl"):
            records = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{data_path}:{number}: not JSON ({exc.msg})") from None
        elif data_path.endswith(".json"):
            records = json.load(f)
        else:
            raise DataError(f"{data_path}: LLaVA data must be a .json or .jsonl file")
    for record in records:
        if "id" in record:
            record["id"] = str(record["id"])
    return records


def image_paths(record: dict) -> list[str]:
    """The record's image files, in the order of their ``<image>`` placeholders."""
    value = record.get("image")
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class LLaVADataset(Dataset):
    """LLaVA training data (v0's arguments, plus ``pack_to_max_length``/``image_tokens``).

    Args:
        image_folder: the folder image paths are relative to.
        image_processor: a transformers image processor (or its config dict).
        data_path: the LLaVA ``.json``/``.jsonl`` file.
        tokenizer: the tokenizer (or its config dict).
        offline_processed_text_folder: a folder saved by ``xtuner preprocess`` instead of
            ``data_path``.
        max_dataset_length: keep a random subset of this many records.
        dataset_map_fn: usually ``llava_map_fn``.
        template_map_fn: the chat template.
        max_length: text tokens per sample (v0: the LLM context minus one image's features).
        pad_image_to_square: pad images to squares with the processor's mean colour (v0).
        pack_to_max_length: pack samples into rows of at most ``max_length + image_tokens``
            tokens, images counted as ``image_tokens`` each (for varlen attention).
        image_tokens: features per image (e.g. 576 for CLIP-L/336); needed for packing.
        seed: shuffle seed for packing.
    """

    def __init__(self, image_folder, image_processor, data_path=None, tokenizer=None,
                 offline_processed_text_folder=None, max_dataset_length=None,
                 dataset_map_fn=None, template_map_fn=None, max_length=2048,
                 pad_image_to_square=False, pack_to_max_length=False, image_tokens=None,
                 seed=0):
        super().__init__()
        if offline_processed_text_folder is not None:
            from datasets import load_from_disk

            self.text_data = load_from_disk(offline_processed_text_folder)
        else:
            if not (data_path and tokenizer):
                raise ConfigError("LLaVADataset needs data_path and tokenizer (or "
                                  "offline_processed_text_folder)")
            self.text_data = self._process(data_path, tokenizer, max_length, dataset_map_fn,
                                           template_map_fn, max_dataset_length, image_folder)
        self.image_folder = image_folder
        self.image_processor = build_from_cfg_or_object(image_processor)
        self.pad_image_to_square = pad_image_to_square
        self.rows = None
        if pack_to_max_length:
            if not image_tokens:
                raise ConfigError("LLaVADataset(pack_to_max_length=True) needs image_tokens, "
                                  "the number of features per image (e.g. 576 for CLIP-L/336)")
            self.rows, stats = self._plan_rows(max_length + image_tokens, image_tokens, seed)
            print_log(str(stats), logger="current")

    @staticmethod
    def _process(data_path, tokenizer, max_length, dataset_map_fn, template_map_fn,
                 max_dataset_length, image_folder):
        from datasets import Dataset as HFDataset

        from .cache import skip_bad_records_by_env
        from .huggingface import process_hf_dataset, resolve_map_fn
        from .raw_check import load_llava_checked

        # Every record and its image files are checked now, so a missing image stops the run
        # with its file:line (the line `xtuner check-custom-dataset` prints), not when the
        # sample is first read hours into training; XTUNER_SKIP_BAD_RECORDS=1 drops them.
        records = load_llava_checked(data_path, image_folder, resolve_map_fn(dataset_map_fn),
                                     skip=skip_bad_records_by_env())
        for record in records:
            if "id" in record:
                record["id"] = str(record["id"])
        if any(isinstance(r.get("image"), list) for r in records):
            for record in records:  # one column type for arrow: every image field a list
                if "image" in record:
                    record["image"] = image_paths(record)
        return process_hf_dataset(
            dataset=HFDataset.from_list(records), tokenizer=tokenizer, max_length=max_length,
            dataset_map_fn=dataset_map_fn, template_map_fn=template_map_fn, split=None,
            max_dataset_length=max_dataset_length, remove_unused_columns=False,
            pack_to_max_length=False, with_image_token=True)

    def _sample_lengths(self, image_tokens: int) -> list[int]:
        """Each sample's length once every placeholder is ``image_tokens`` features."""
        return [len(ids) + (image_tokens - 1) * ids.count(IMAGE_TOKEN_INDEX)
                for ids in self.text_data["input_ids"]]

    def _plan_rows(self, budget: int, image_tokens: int, seed: int):
        lengths = self._sample_lengths(image_tokens)
        too_long = [i for i, n in enumerate(lengths) if n > budget]
        if too_long:
            sample = self.text_data[too_long[0]]
            raise DataError(
                f"{len(too_long)} sample(s) longer than a packed row of {budget} tokens once "
                f"each image counts as {image_tokens} (e.g. record {sample.get('id', '?')}: "
                f"{lengths[too_long[0]]} tokens); raise max_length, or check the data with "
                "`xtuner check-custom-dataset`")
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed))
        shuffled = [lengths[i] for i in order.tolist()]
        rows = [[int(order[i]) for i in row] for row in plan_packed_rows(shuffled, budget)]
        stats = PackingStats(samples=len(lengths), rows=len(rows), tokens=sum(lengths),
                             max_length=budget)
        return rows, stats

    @property
    def modality_length(self) -> list[int]:
        """Per item: its length, negative for text-only samples (v0, for
        ``LengthGroupedSampler``); packed rows count as multimodal."""
        if self.rows is not None:
            ids = self.text_data["input_ids"]
            return [sum(len(ids[i]) for i in row) for row in self.rows]
        return [len(s["input_ids"]) * (1 if image_paths(s) else -1) for s in self.text_data]

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.text_data)

    def _pixel_values(self, sample: dict) -> torch.Tensor:
        """``(placeholders, C, H, W)``: the sample's images, one per placeholder."""
        wanted = sample["input_ids"].count(IMAGE_TOKEN_INDEX)
        paths = image_paths(sample)
        if wanted > len(paths):
            raise DataError(f"record {sample.get('id', '?')}: {wanted} <image> in the text "
                            f"but {len(paths)} image(s)")
        # Truncation to max_length may have cut placeholders: their images are not used.
        images = [self._load_image(path) for path in paths[:wanted]]
        if not images:
            size = self._crop_size()
            return torch.zeros(0, 3, size["height"], size["width"])
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def _crop_size(self) -> dict:
        size = getattr(self.image_processor, "crop_size", None) or self.image_processor.size
        return {"height": size.get("height", size.get("shortest_edge")),
                "width": size.get("width", size.get("shortest_edge"))}

    def _load_image(self, path: str) -> Image.Image:
        full = osp.join(self.image_folder, path)
        try:
            image = Image.open(full).convert("RGB")
        except (OSError, ValueError) as exc:
            raise DataError(f"{full}: cannot read the image ({exc})") from None
        if self.pad_image_to_square:
            mean = self.image_processor.image_mean
            image = expand2square(image, tuple(int(x * 255) for x in mean))
        return image

    def __getitem__(self, index: int) -> dict:
        if self.rows is None:
            sample = dict(self.text_data[index])
            sample["pixel_values"] = self._pixel_values(sample)
            return sample
        input_ids, labels, positions, bounds, pixels = [], [], [], [0], []
        for i in self.rows[index]:
            sample = self.text_data[i]
            input_ids += sample["input_ids"]
            labels += sample["labels"]
            positions += range(len(sample["input_ids"]))
            bounds.append(bounds[-1] + len(sample["input_ids"]))
            pixels.append(self._pixel_values(sample))
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions,
                "cumulative_len": bounds, "pixel_values": torch.cat(pixels)}


def build_from_cfg_or_object(value):
    """Build a config dict with the registry; return anything else as it is."""
    return BUILDER.build(value) if isinstance(value, dict) else value
