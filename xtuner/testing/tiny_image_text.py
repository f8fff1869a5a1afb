"""A tiny Qwen2-VL-shaped image-text model, its processor and image-text chat data, all
built in-process (no model hub): for tests, examples and the GPU benchmark (which passes
real shapes).

Example::

    from xtuner.testing.tiny_image_text import build_tiny_qwen2_vl, write_image_text_data

    model_dir = build_tiny_qwen2_vl(tmp_path / "qwen2_vl")
    media_jsonl, text_jsonl = write_image_text_data(tmp_path / "data")
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["QWEN2_VL_CHAT_TEMPLATE", "QWEN2_VL_2B_SHAPES", "build_tiny_qwen2_vl",
           "write_image_text_data"]

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
                        save_weights: bool = True) -> str:
    """Build a randomly initialised ``Qwen2VLForConditionalGeneration``, a tokenizer trained
    in-process with Qwen2-VL's special tokens, and its ``Qwen2VLProcessor`` (PIL image
    processor, Qwen2-VL's chat template), saved in ``save_dir``.

    ``mrope_section`` must sum to half the head dim. ``vocab_size`` None: the tokenizer's.
    ``save_weights`` False writes the config only (for random-init runs of large shapes).

    Returns:
        ``str(save_dir)``.
    """
    from transformers import AddedToken, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from xtuner.dataset.image_text import save_processor

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
    config = Qwen2VLConfig(
        text_config=dict(
            hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
            intermediate_size=intermediate_size, vocab_size=vocab_size or len(tokenizer),
            rope_parameters=dict(rope_type="default", mrope_section=list(mrope_section),
                                 rope_theta=1000000.0),
            max_position_embeddings=32768, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
            tie_word_embeddings=tie_word_embeddings),
        vision_config=dict(depth=vision_depth, embed_dim=vision_embed_dim,
                           num_heads=vision_num_heads, hidden_size=hidden_size,
                           mlp_ratio=vision_mlp_ratio, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, in_channels=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings)
    if save_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen2VLForConditionalGeneration(config).to(dtype)
        model.generation_config.eos_token_id = [tokenizer.eos_token_id,
                                                tokenizer.convert_tokens_to_ids("<|im_end|>")]
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(str(save_dir), safe_serialization=True)
    else:
        config.save_pretrained(str(save_dir))
    tokenizer.save_pretrained(str(save_dir))
    _save_qwen2_vl_processor(save_dir, tokenizer, min_pixels, max_pixels, save_processor)
    return str(save_dir)


def _save_qwen2_vl_processor(save_dir: Path, tokenizer, min_pixels, max_pixels,
                             save_processor) -> None:
    import importlib.util

    from transformers import Qwen2VLProcessor

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    if importlib.util.find_spec("torchvision") is not None:
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(size=size),
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
        json.dumps({"processor_class": "Qwen2VLProcessor"}, indent=2) + "\n", encoding="utf-8")


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
