"""Tiny Qwen2-VL- and InternVL-shaped image-text models, their processors and image-text
chat data, all built in-process (no model hub): for tests, examples and the GPU benchmark
(which passes real shapes).

Example::

    from xtuner.testing.tiny_image_text import build_tiny_qwen2_vl, write_image_text_data

    model_dir = build_tiny_qwen2_vl(tmp_path / "qwen2_vl")
    media_jsonl, text_jsonl = write_image_text_data(tmp_path / "data")
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["INTERNVL_CHAT_TEMPLATE", "QWEN2_VL_CHAT_TEMPLATE", "QWEN2_VL_2B_SHAPES",
           "build_tiny_internvl", "build_tiny_qwen2_vl", "write_image_text_data"]

# Qwen2-VL's chat template for text and images (its video branch left out).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' or 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# InternVL's chat template for text and images: an image is its context token on a line.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<IMG_CONTEXT>\n{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

#: Qwen2-VL-2B's shapes (for :func:`build_tiny_qwen2_vl`).
QWEN2_VL_2B_SHAPES = dict(
    hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
    intermediate_size=8960, vocab_size=151936, mrope_section=(16, 24, 24),
    vision_depth=32, vision_embed_dim=1280, vision_num_heads=16, vision_mlp_ratio=4,
    tie_word_embeddings=True)

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220),
           "yellow": (240, 220, 40)}


def build_tiny_qwen2_vl(save_dir, hidden_size: int = 64, num_hidden_layers: int = 2,
                        num_attention_heads: int = 4, num_key_value_heads: int = 2,
                        intermediate_size: int = 128, vocab_size: int | None = None,
                        mrope_section=(2, 3, 3), vision_depth: int = 2,
                        vision_embed_dim: int = 32, vision_num_heads: int = 4,
                        vision_mlp_ratio: int = 2, min_pixels: int = 56 * 56,
                        max_pixels: int = 112 * 112, tie_word_embeddings: bool = False,
                        texts=(), seed: int = 0, dtype: torch.dtype = torch.float32,
                        save_weights: bool = True, version: str = "2") -> str:
    """Build a randomly initialised ``Qwen2VLForConditionalGeneration`` (``version="2.5"``:
    ``Qwen2_5_VLForConditionalGeneration``, window attention in the vision tower), a
    tokenizer trained in-process with Qwen2-VL's special tokens, and its processor (PIL
    image processor, Qwen2-VL's chat template), saved in ``save_dir``.

    ``mrope_section`` must sum to half the head dim. ``vocab_size`` None: the tokenizer's.
    ``save_weights`` False writes the config only (for random-init runs of large shapes).

    Returns:
        ``str(save_dir)``.
    """
    import transformers
    from transformers import AddedToken

    from .tiny_models import DEFAULT_CORPUS, train_tiny_tokenizer

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    corpus = list(DEFAULT_CORPUS) + list(texts) + [f"The picture is {c}." for c in COLOURS]
    tokenizer = train_tiny_tokenizer(corpus, save_dir, tokenizer_class="Qwen2Tokenizer",
                                     bos_token=None)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False)
                          for t in VISION_TOKENS], special_tokens=True)
    ids = dict(zip(VISION_TOKENS, tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))))
    head_dim = hidden_size // num_attention_heads
    if sum(mrope_section) * 2 != head_dim:
        raise ValueError(f"mrope_section {mrope_section} must sum to head_dim/2 = "
                         f"{head_dim // 2}")
    if version not in ("2", "2.5"):
        raise ValueError(f"version must be '2' or '2.5', got {version!r}")
    prefix = "Qwen2VL" if version == "2" else "Qwen2_5_VL"
    config_cls = getattr(transformers, f"{prefix}Config")
    model_cls = getattr(transformers, f"{prefix}ForConditionalGeneration")
    if version == "2":
        vision = dict(depth=vision_depth, embed_dim=vision_embed_dim,
                      num_heads=vision_num_heads, hidden_size=hidden_size,
                      mlp_ratio=vision_mlp_ratio, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, in_channels=3)
    else:
        vision = dict(depth=vision_depth, hidden_size=vision_embed_dim,
                      intermediate_size=vision_embed_dim * vision_mlp_ratio,
                      num_heads=vision_num_heads, out_hidden_size=hidden_size,
                      fullatt_block_indexes=[vision_depth - 1], window_size=112,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                      in_channels=3)
    config = config_cls(
        text_config=dict(
            hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
            intermediate_size=intermediate_size, vocab_size=vocab_size or len(tokenizer),
            rope_parameters=dict(rope_type="default", mrope_section=list(mrope_section),
                                 rope_theta=1000000.0),
            max_position_embeddings=32768, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
            tie_word_embeddings=tie_word_embeddings),
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings)
    if save_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_cls(config).to(dtype)
        model.generation_config.eos_token_id = [tokenizer.eos_token_id,
                                                tokenizer.convert_tokens_to_ids("<|im_end|>")]
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(str(save_dir), safe_serialization=True)
    else:
        config.save_pretrained(str(save_dir))
    tokenizer.save_pretrained(str(save_dir))
    _save_qwen2_vl_processor(save_dir, tokenizer, min_pixels, max_pixels,
                             getattr(transformers, f"{prefix}Processor"))
    return str(save_dir)


def _save_qwen2_vl_processor(save_dir: Path, tokenizer, min_pixels, max_pixels,
                             processor_cls) -> None:
    import importlib.util

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    if importlib.util.find_spec("torchvision") is not None:
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        processor = processor_cls(image_processor=Qwen2VLImageProcessor(size=size),
                                     tokenizer=tokenizer,
                                     video_processor=Qwen2VLVideoProcessor(),
                                     chat_template=QWEN2_VL_CHAT_TEMPLATE)
        processor.save_pretrained(str(save_dir))
        return
    # Without torchvision no video processor can be built: save the parts a processor is
    # loaded from (xtuner.dataset.image_text.load_processor assembles them).
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    image_processor = Qwen2VLImageProcessorPil(size=size)
    tokenizer.save_pretrained(str(save_dir))
    image_processor.save_pretrained(str(save_dir))
    (save_dir / "chat_template.jinja").write_text(QWEN2_VL_CHAT_TEMPLATE, encoding="utf-8")
    (save_dir / "processor_config.json").write_text(
        json.dumps({"processor_class": processor_cls.__name__}, indent=2) + "\n", encoding="utf-8")


def build_tiny_internvl(save_dir, hidden_size: int = 64, num_hidden_layers: int = 2,
                        vision_hidden_size: int = 32, image_size: int = 56, texts=(),
                        seed: int = 0) -> str:
    """Build a randomly initialised ``InternVLForConditionalGeneration`` (Qwen2 language
    model; ``image_size`` 56 with 14-pixel patches and pixel shuffle 0.5: 4 tokens per
    tile), a tokenizer trained in-process with InternVL's image tokens, and its
    ``InternVLProcessor`` (PIL image processor, tiles on), saved in ``save_dir``.

    Returns:
        ``str(save_dir)``.
    """
    import importlib.util

    from transformers import (
        AddedToken,
        AutoTokenizer,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
    )

    from .tiny_models import DEFAULT_CORPUS, train_tiny_tokenizer

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    corpus = list(DEFAULT_CORPUS) + list(texts) + [f"The picture is {c}." for c in COLOURS]
    tokenizer = train_tiny_tokenizer(corpus, save_dir, tokenizer_class="Qwen2Tokenizer",
                                     bos_token=None)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False)
                          for t in INTERNVL_TOKENS.values()], special_tokens=True)
    tokenizer.save_pretrained(str(save_dir))
    # The processor finds its image tokens as named tokenizer attributes.
    config_file = save_dir / "tokenizer_config.json"
    settings = json.loads(config_file.read_text(encoding="utf-8"))
    settings["extra_special_tokens"] = INTERNVL_TOKENS
    config_file.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(str(save_dir))
    per_tile = (image_size // 14) ** 2 // 4
    config = InternVLConfig(
        vision_config=dict(hidden_size=vision_hidden_size, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=2 * vision_hidden_size,
                           image_size=[image_size, image_size], patch_size=[14, 14]),
        text_config=dict(model_type="qwen2", hidden_size=hidden_size,
                         num_hidden_layers=num_hidden_layers, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=2 * hidden_size,
                         vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False),
        image_token_id=tokenizer.context_image_token_id, image_seq_length=per_tile,
        downsample_ratio=0.5, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InternVLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id,
                                            tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(save_dir), safe_serialization=True)
    size = {"height": image_size, "width": image_size}
    if importlib.util.find_spec("torchvision") is not None:
        from transformers import GotOcr2ImageProcessor, InternVLVideoProcessor

        InternVLProcessor(image_processor=GotOcr2ImageProcessor(size=size),
                          tokenizer=tokenizer, video_processor=InternVLVideoProcessor(),
                          image_seq_length=per_tile,
                          chat_template=INTERNVL_CHAT_TEMPLATE).save_pretrained(str(save_dir))
        return str(save_dir)
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
        GotOcr2ImageProcessorPil,
    )

    GotOcr2ImageProcessorPil(size=size).save_pretrained(str(save_dir))
    (save_dir / "chat_template.jinja").write_text(INTERNVL_CHAT_TEMPLATE, encoding="utf-8")
    (save_dir / "processor_config.json").write_text(json.dumps(
        {"processor_class": "InternVLProcessor", "image_seq_length": per_tile}, indent=2)
        + "\n", encoding="utf-8")
    return str(save_dir)


def write_image_text_data(root, num_media: int = 8, num_text: int = 4,
                          image_size: tuple[int, int] = (56, 84)) -> tuple[str, str]:
    """Write coloured images (PIL) and two JSONL files under ``root``: image-text records
    (``messages`` with ``image_url`` parts, some with two images or two turns) and pure-text
    ones.

    Returns:
        ``(media_jsonl, text_jsonl)``; image paths in the records are relative to ``root``.
    """
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for name, rgb in COLOURS.items():
        Image.new("RGB", image_size, rgb).save(root / "images" / f"{name}.png")
    media, text = [], []
    for i in range(num_media):
        first, second = names[i % len(names)], names[(i + 1) % len(names)]
        image = {"type": "image_url", "image_url": {"url": f"images/{first}.png"}}
        messages = [{"role": "user", "content": [image, {"type": "text",
                                                         "text": "What colour is this?"}]},
                    {"role": "assistant", "content": f"The picture is {first}."}]
        if i % 3 == 1:  # two images in one turn
            messages[0]["content"].insert(1, {"type": "image_url",
                                              "image_url": {"url": f"images/{second}.png"}})
            messages[1]["content"] = f"The pictures are {first} and {second}."
        if i % 3 == 2:  # a second turn
            messages += [{"role": "user", "content": "Say it again."},
                         {"role": "assistant", "content": f"It is {first}."}]
        media.append({"messages": messages})
    for i in range(num_text):
        text.append({"messages": [
            {"role": "user", "content": f"Count to {i + 3}."},
            {"role": "assistant", "content": " ".join(str(n) for n in range(1, i + 4))}]})
    media_file, text_file = root / "media.jsonl", root / "text.jsonl"
    media_file.write_text("".join(json.dumps(r) + "\n" for r in media), encoding="utf-8")
    text_file.write_text("".join(json.dumps(r) + "\n" for r in text), encoding="utf-8")
    return str(media_file), str(text_file)
