"""Image-text chat data for Hugging Face image-text-to-text models (Qwen2-VL, InternVL, ...).

Records are JSONL ``{"messages": [...]}`` in the OpenAI style; a message's ``content`` is a
string or a list of parts ``{"type": "text", "text": ...}`` and ``{"type": "image_url",
"image_url": {"url": "rel/path.jpg"}}`` (relative to ``media_root``). Pure-text records are
fine too.

Everything model-specific comes from the model's own processor: its chat template renders the
conversation (an image part becomes the template's image placeholder), and the processor
tokenizes it, expands each placeholder into the image's tokens and makes the vision inputs
(``pixel_values``, ``image_grid_thw``, ...). Only assistant turns are trained: each assistant
turn is what the template adds after the generation prompt before it, and every turn is
tokenized by the processor; when a sample is read, the whole rendered chat is processed again
(for the vision inputs) and its ids must equal the stored ones, so the labels always line up
with the processor's own tokenization.

:class:`ImageTextJsonlDataset` packs whole samples into rows (``cumulative_len`` keeps their
boundaries) and :func:`image_text_collate_fn` batches rows for
:class:`~xtuner.model.image_text.ImageTextFinetune`.
"""
from __future__ import annotations

import math
import os.path as osp
from collections.abc import Sequence
from pathlib import Path

import torch
from mmengine import print_log
from torch.utils.data import Dataset

from xtuner.dataset.chat_turns import assistant_segments, record_messages
from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import ConfigError, DataError

from .media.dataset import read_jsonl
from .packing import PackingStats, plan_packed_rows

__all__ = ["ImageTextJsonlDataset", "ImageTextTokenizeFunction", "image_text_collate_fn",
           "jsonl_files", "load_processor", "save_processor"]

#: Processor outputs that describe the text; everything else is a vision input of the model.
TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _torchvision_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is None


def load_processor(path: str, **kwargs):
    """The model's processor (``AutoProcessor.from_pretrained(path, **kwargs)``).

    Without torchvision, transformers (5.2x) cannot build the processor of a model that
    also takes videos (Qwen2-VL, InternVL): the processor's ``video_processor`` must be a
    ``VideoProcessorMixin``, a name transformers only exports with torchvision, and every
    video processor needs torchvision. Images do not need it (the PIL image processors
    work), so there the processor is assembled from transformers' own parts: the model's
    image processor and tokenizer, its chat template and settings, and a bare
    ``VideoProcessorMixin`` (videos raise). With torchvision it is always the plain
    ``AutoProcessor``.
    """
    import transformers
    from transformers import AutoProcessor

    if not _torchvision_missing():
        return AutoProcessor.from_pretrained(path, **kwargs)
    try:
        return AutoProcessor.from_pretrained(path, **kwargs)
    except (ImportError, TypeError, AttributeError, ValueError):
        pass  # the video processor: built below without it
    import json

    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.video_processing_utils import VideoProcessorMixin

    config_file = Path(path) / "processor_config.json"
    if not config_file.is_file():
        raise ConfigError(f"{path}: no processor_config.json; save the model's processor "
                          "there (processor.save_pretrained) or install torchvision")
    settings = json.loads(config_file.read_text(encoding="utf-8"))
    cls = getattr(transformers, settings.pop("processor_class", ""), None)
    if cls is None:
        raise ConfigError(f"{config_file}: unknown processor_class")
    from transformers import processing_utils

    # What ProcessorMixin checks the video processor against (looked up on the package, or
    # on the package instance processing_utils imported): the class transformers exports
    # when torchvision is installed.
    for module in (transformers, getattr(processing_utils, "transformers_module", None)):
        if module is not None and not hasattr(module, "VideoProcessorMixin"):
            module.VideoProcessorMixin = VideoProcessorMixin
    settings = {k: v for k, v in settings.items()
                if k not in ("image_processor", "video_processor", "tokenizer")}
    template = Path(path) / "chat_template.jinja"
    if template.is_file():
        settings.setdefault("chat_template", template.read_text(encoding="utf-8"))
    image_kwargs = {k: kwargs.pop(k) for k in ("min_pixels", "max_pixels", "size")
                    if k in kwargs}
    return cls(image_processor=AutoImageProcessor.from_pretrained(path, **image_kwargs),
               tokenizer=AutoTokenizer.from_pretrained(path),
               video_processor=VideoProcessorMixin(), **settings, **kwargs)


def save_processor(processor, save_dir: str) -> None:
    """``processor.save_pretrained(save_dir)``; a processor made by :func:`load_processor`
    without torchvision is saved part by part (tokenizer, image processor, chat template,
    ``processor_config.json``), which ``AutoProcessor`` reads where torchvision is
    installed."""
    try:
        from transformers.video_processing_utils import VideoProcessorMixin
    except ImportError:  # older transformers: no such class, so load_processor never used it
        VideoProcessorMixin = None  # noqa: N806
    if (VideoProcessorMixin is None
            or type(getattr(processor, "video_processor", None)) is not VideoProcessorMixin):
        processor.save_pretrained(save_dir)
        return
    import json

    processor.tokenizer.save_pretrained(save_dir)
    processor.image_processor.save_pretrained(save_dir)
    if processor.chat_template:
        Path(save_dir, "chat_template.jinja").write_text(processor.chat_template,
                                                         encoding="utf-8")
    settings = {"processor_class": type(processor).__name__}
    for key in ("image_seq_length",):
        if hasattr(processor, key):
            settings[key] = getattr(processor, key)
    Path(save_dir, "processor_config.json").write_text(json.dumps(settings, indent=2) + "\n",
                                                       encoding="utf-8")


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


class ImageTextTokenizeFunction:
    """Tokenize image-text chat records with the model's processor (see the module
    docstring).

    Args:
        processor: the processor, or its folder (:func:`load_processor`).
        media_root: the folder relative image paths are under.
        max_length: the most tokens a sample keeps; text after the last image is cut, a
            sample whose images do not fit is a :class:`DataError`.
        chat_template: a Jinja chat template instead of the processor's own.
    """

    def __init__(self, processor, media_root: str = ".", max_length: int | None = None,
                 chat_template: str | None = None):
        self.processor = load_processor(processor) if isinstance(processor, str) else processor
        self.media_root = str(media_root)
        self.max_length = max_length
        self.chat_template = chat_template
        if chat_template is None and not getattr(self.processor, "chat_template", None):
            raise ConfigError(f"{type(self.processor).__name__} has no chat template; pass "
                              "chat_template='...' (a Jinja template)")
        self.image_token = getattr(self.processor, "image_token", None)
        self.image_token_id = getattr(self.processor, "image_token_id", None)
        if self.image_token is None or self.image_token_id is None:
            raise ConfigError(f"{type(self.processor).__name__} has no image_token; not an "
                              "image-text processor")
        tokenizer = self.processor.tokenizer
        # Every token an image span is made of (start/end markers too), never trained.
        span_ids = getattr(self.processor, "image_token_ids", None) or [self.image_token_id]
        for name in ("vision_start_token", "vision_end_token"):
            token = getattr(tokenizer, name, None) or {
                "vision_start_token": "<|vision_start|>",
                "vision_end_token": "<|vision_end|>"}[name]
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                span_ids = [*span_ids, token_id]
        self.image_span_ids = set(span_ids)

    # -- records ------------------------------------------------------------------------------
    def _image_path(self, part: dict) -> str:
        spec = part.get("image_url")
        url = spec.get("url") if isinstance(spec, dict) else spec
        if not isinstance(url, str) or not url:
            raise DataError(f"an image_url part needs {{'url': 'path'}}, got {str(part)[:80]}")
        if url.startswith("file://"):
            url = url[len("file://"):]
        if "://" in url or url.startswith("data:"):
            raise DataError(f"image url {url[:60]!r}: only local files (relative to "
                            "media_root) are read")
        path = url if osp.isabs(url) else osp.join(self.media_root, url)
        if not osp.isfile(path):
            raise DataError(f"image {url!r} not found (looked at {path}); check "
                            "DatasetConfig.media_root")
        if not path.lower().endswith(IMAGE_SUFFIXES):
            raise DataError(f"image {url!r}: unsupported suffix; expected one of "
                            f"{', '.join(IMAGE_SUFFIXES)}")
        return path

    def messages(self, record: dict) -> tuple[list[dict], list[str]]:
        """The record's messages in the form the processor's template takes (an image part
        becomes ``{"type": "image"}``), and the image paths in order."""
        messages = record_messages(record)
        out, images = [], []
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind == "text":
                        text = str(part.get("text", ""))
                        if self.image_token in text:
                            raise DataError(f"the text holds the image token "
                                            f"{self.image_token!r}: use image_url parts")
                        parts.append({"type": "text", "text": text})
                    elif kind == "image_url":
                        images.append(self._image_path(part))
                        parts.append({"type": "image"})
                    else:
                        raise DataError(f"unknown content part type {kind!r}; expected "
                                        "'text' or 'image_url'")
                content = parts
            elif not isinstance(content, str):
                raise DataError(f"a message's content must be a string or a list of parts, "
                                f"got {type(content).__name__}")
            elif self.image_token in content:
                raise DataError(f"the text holds the image token {self.image_token!r}: use "
                                "image_url parts")
            out.append({"role": message["role"], "content": content})
        return out, images

    def _render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        kwargs = {"chat_template": self.chat_template} if self.chat_template else {}
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs)

    def segments(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The rendered chat cut into ``(text, trained)`` pieces (assistant turns trained)."""
        return assistant_segments(self._render, messages)

    def _process(self, text: str, images: list):
        return self.processor(text=[text], images=images or None, return_tensors="pt")

    def __call__(self, record: dict) -> dict:
        """Tokenize one record.

        Returns:
            ``input_ids``, ``labels`` (``IGNORE_INDEX`` outside assistant turns and on image
            tokens), ``text`` (the rendered chat), ``images`` (paths) and ``num_tokens``.
        """
        messages, paths = self.messages(record)
        pending = [_open_image(p) for p in paths]
        input_ids: list[int] = []
        labels: list[int] = []
        for text, trained in self.segments(messages):
            count = text.count(self.image_token)
            images, pending = pending[:count], pending[count:]
            ids = self._process(text, images)["input_ids"][0].tolist()
            input_ids += ids
            labels += ids if trained else [IGNORE_INDEX] * len(ids)
        if pending:
            raise DataError(f"{len(paths)} image part(s) but the chat template rendered "
                            f"{len(paths) - len(pending)} image placeholder(s)")
        labels = [IGNORE_INDEX if i in self.image_span_ids else label
                  for i, label in zip(input_ids, labels)]
        if self.max_length is not None and len(input_ids) > self.max_length:
            last = max((k for k, i in enumerate(input_ids) if i in self.image_span_ids),
                       default=-1)
            if last >= self.max_length:
                raise DataError(f"the image tokens end at token {last + 1} but the samples "
                                f"are cut at {self.max_length} (pack_max_length): raise it "
                                "or use smaller images")
            input_ids, labels = input_ids[:self.max_length], labels[:self.max_length]
        return {"input_ids": input_ids, "labels": labels, "text": self._render(messages),
                "images": paths, "num_tokens": len(input_ids)}

    def vision_inputs(self, sample: dict) -> dict:
        """The model's vision inputs for a tokenized sample (empty for text only), from the
        processor run on the whole rendered chat, whose ids must equal the sample's."""
        if not sample["images"]:
            return {}
        out = self._process(sample["text"], [_open_image(p) for p in sample["images"]])
        ids = out["input_ids"][0].tolist()
        if ids[:len(sample["input_ids"])] != sample["input_ids"]:
            raise DataError("the processor tokenizes the whole chat differently from its "
                            "turns one by one; the labels would not line up (check the "
                            "chat template)")
        return {k: v for k, v in out.items() if k not in TEXT_KEYS}

    def blank_vision_inputs(self) -> tuple[dict, int]:
        """Vision inputs of one small blank image and the number of image tokens it makes:
        rows without images run them through the vision tower, so every rank uses every
        trainable weight each step (DDP, ZeRO-3)."""
        from PIL import Image

        out = self._process(self.image_token, [Image.new("RGB", (56, 56))])
        tokens = int((out["input_ids"] == self.image_token_id).sum())
        return {k: v for k, v in out.items() if k not in TEXT_KEYS}, tokens


def jsonl_files(anno_path: str) -> list[str]:
    """The JSONL files of a ``DatasetConfig.anno_path``: the file, or every ``*.jsonl``
    under the folder (sorted)."""
    path = Path(anno_path)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.jsonl"))
        if not files:
            raise DataError(f"DatasetConfig.anno_path={anno_path!r}: no *.jsonl file in it")
        return files
    if not path.is_file():
        raise DataError(f"DatasetConfig.anno_path={anno_path!r} does not exist")
    return [str(path)]


class ImageTextJsonlDataset(Dataset):
    """Image-text (and pure-text) chat records from several JSONL sources, tokenized by
    :class:`ImageTextTokenizeFunction` and optionally packed.

    Args:
        sources: ``dict(anno_path=..., media_root=..., sample_ratio=...)`` per source: a
            file or a folder of ``*.jsonl``; 5.0 uses each record 5 times, 0.5 a seeded
            random half (a fraction above 1: a seeded random ``round(ratio * N)`` of the
            records repeated ``ceil(ratio)`` times).
        processor: the processor or its folder.
        max_length: tokens per sample, and per packed row.
        pack_to_max_length: pack whole samples into rows of at most ``max_length`` tokens.
        chat_template: a Jinja chat template instead of the processor's.
        seed: seed of the sampling and packing plans.
    """

    def __init__(self, sources: Sequence[dict], processor, max_length: int,
                 pack_to_max_length: bool = True, chat_template: str | None = None,
                 seed: int = 0):
        super().__init__()
        processor = load_processor(processor) if isinstance(processor, str) else processor
        self.max_length = max_length
        self.samples: list[dict] = []
        self.order: list[int] = []  # sample indices in use (repeats share one sample)
        self.tokenize_fns = []
        generator = torch.Generator().manual_seed(seed)
        for source in sources:
            fn = ImageTextTokenizeFunction(processor, source.get("media_root") or ".",
                                           max_length, chat_template)
            self.tokenize_fns.append(fn)
            first = len(self.samples)
            for path in jsonl_files(source["anno_path"]):
                for number, record in read_jsonl(path):
                    where = f"{path}:{number}"
                    try:
                        sample = fn(record)
                    except DataError as exc:
                        raise DataError(f"{where}: {exc}") from None
                    sample.update(where=where, fn=len(self.tokenize_fns) - 1)
                    self.samples.append(sample)
            indices = list(range(first, len(self.samples)))
            ratio = float(source.get("sample_ratio", 1.0))
            repeated = indices * max(1, math.ceil(ratio))
            if ratio != math.ceil(ratio):
                keep = max(1, round(ratio * len(indices)))
                pick = torch.randperm(len(repeated), generator=generator)[:keep]
                repeated = [repeated[i] for i in sorted(pick.tolist())]
            self.order += repeated
        self._blank = None
        self.rows = None
        if pack_to_max_length:
            lengths = [self.samples[i]["num_tokens"] for i in self.order]
            shuffle = torch.randperm(len(lengths), generator=generator).tolist()
            plan = plan_packed_rows([lengths[i] for i in shuffle], max_length)
            self.rows = [[self.order[shuffle[i]] for i in row] for row in plan]
            print_log(str(PackingStats(samples=len(lengths), rows=len(self.rows),
                                       tokens=sum(lengths), max_length=max_length)),
                      logger="current")

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.order)

    @property
    def modality_length(self) -> list[int]:
        """Tokens per item (for length-grouped samplers)."""
        rows = self.rows if self.rows is not None else [[i] for i in self.order]
        return [sum(self.samples[i]["num_tokens"] for i in row) for row in rows]

    def _vision(self, sample: dict) -> dict:
        try:
            return self.tokenize_fns[sample["fn"]].vision_inputs(sample)
        except DataError as exc:
            raise DataError(f"{sample['where']}: {exc}") from None

    def __getitem__(self, index: int) -> dict:
        """A row: ``input_ids``, ``labels``, ``position_ids`` (restarting per sample),
        ``cumulative_len``, ``image_counts`` (images per sample) and ``vision`` (the
        processor's vision inputs of its images, or a blank image's with ``blank_image``
        for a text-only row)."""
        members = self.rows[index] if self.rows is not None else [self.order[index]]
        input_ids, labels, positions, bounds, counts, vision = [], [], [], [0], [], []
        for i in members:
            sample = self.samples[i]
            input_ids += sample["input_ids"]
            labels += sample["labels"]
            positions += range(len(sample["input_ids"]))
            bounds.append(bounds[-1] + len(sample["input_ids"]))
            counts.append(len(sample["images"]))
            if sample["images"]:
                vision.append(self._vision(sample))
        row = {"input_ids": input_ids, "labels": labels, "position_ids": positions,
               "cumulative_len": bounds, "image_counts": counts}
        if vision:
            row["vision"] = {k: torch.cat([v[k] for v in vision]) for k in vision[0]}
        else:
            if self._blank is None:
                self._blank = self.tokenize_fns[0].blank_vision_inputs()[0]
            row["vision"], row["blank_image"] = self._blank, True
        return row


def image_text_collate_fn(instances: Sequence[dict], pad_index: int | None = None,
                          return_hf_format: bool = False, use_varlen_attn: bool = True) -> dict:
    """Collate rows of :class:`ImageTextJsonlDataset` into one row (samples kept apart by
    ``cumulative_len``, as :func:`default_collate_fn` does with ``use_varlen_attn``).

    ``vision`` holds the vision inputs of every real image in order (a blank image's when no
    row has one, with ``blank_image=True``); ``image_counts`` the images per sample.
    """
    from .collate_fns import default_collate_fn

    data = default_collate_fn(instances, pad_index=pad_index, return_hf_format=True,
                              use_varlen_attn=True)
    data["image_counts"] = [c for x in instances for c in x["image_counts"]]
    real = [x["vision"] for x in instances if not x.get("blank_image")]
    if real:
        data["vision"] = {k: torch.cat([v[k] for v in real]) for k in real[0]}
    else:
        data["vision"], data["blank_image"] = instances[0]["vision"], True
    return data if return_hf_format else {"data": data, "data_samples": None}
