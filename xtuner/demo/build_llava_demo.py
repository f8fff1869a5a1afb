"""Regenerate the offline LLaVA demo assets in ``xtuner/demo``.

Usage::

    python -m xtuner.demo.build_llava_demo [--output-dir DIR]

Writes, under ``DIR`` (default: the installed ``xtuner/demo`` directory):

* ``shapes/images/*.png``: 32x32 pictures of a coloured shape (circle, square, triangle or
  cross; red, green, blue, yellow, purple or orange), large and near the centre, on a white
  background, and ``shapes/shapes.jsonl``: one LLaVA record per picture, e.g.
  ``{"id": "0", "image": "images/0.png", "conversations": [{"from": "human", "value":
  "<image>\\nWhat is in the picture?"}, {"from": "gpt", "value": "A red circle."}]}``.
* ``tiny_clip/``: a randomly initialised ``CLIPVisionModel`` (32x32 images, 8x8 patches, so 16
  features per image; hidden 64, 2 layers) with its ``CLIPImageProcessor``.

With the tiny Llama of ``tiny_llm/`` these make ``demo_tiny_llava_shapes_e12`` learn, on a CPU
in a few minutes, to name what a picture shows. Deterministic for a given torch version.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 32
PATCH = 8
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 70, 220),
           "yellow": (235, 200, 20), "purple": (140, 50, 170), "orange": (245, 130, 20)}
QUESTIONS = ("What is in the picture?", "Describe the image.", "What do you see?")
PICTURES_PER_KIND = 24


def draw(shape: str, colour: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """A ``SIZE``-pixel picture of one shape on white."""
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    # Large and near the centre: the 4x4 patches of the tiny tower see each shape's outline
    # the same way in every picture, so a few minutes of CPU training generalise.
    half = rng.randint(10, 13)
    cx, cy = SIZE // 2 + rng.randint(-2, 2), SIZE // 2 + rng.randint(-2, 2)
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    elif shape == "triangle":
        pen.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)],
                    fill=colour)
    else:
        bar = max(2, half // 3)
        pen.rectangle((cx - half, cy - bar, cx + half, cy + bar), fill=colour)
        pen.rectangle((cx - bar, cy - half, cx + bar, cy + half), fill=colour)
    return image


def answer(colour: str, shape: str) -> str:
    """The caption of a picture, e.g. ``'An orange cross.'``."""
    return f"{'An' if colour[0] in 'aeiou' else 'A'} {colour} {shape}."


def build_shapes(out_dir: Path, seed: int = 0) -> Path:
    """Write the pictures and ``shapes.jsonl``; return the JSONL path."""
    rng = random.Random(seed)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for shape in SHAPES:
        for name, colour in COLOURS.items():
            for _ in range(PICTURES_PER_KIND):
                index = len(records)
                draw(shape, colour, rng).save(images / f"{index}.png", optimize=True)
                records.append({"id": str(index), "image": f"images/{index}.png",
                                "conversations": [
                                    {"from": "human",
                                     "value": f"<image>\n{QUESTIONS[index % len(QUESTIONS)]}"},
                                    {"from": "gpt", "value": answer(name, shape)}]})
    path = out_dir / "shapes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def build_tiny_clip(out_dir: Path, seed: int = 0) -> Path:
    """A random-init ``CLIPVisionModel`` and its image processor, saved in ``out_dir``."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, image_size=SIZE, patch_size=PATCH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModel(config)
    model.save_pretrained(out_dir)
    CLIPImageProcessor(size={"shortest_edge": SIZE},
                       crop_size={"height": SIZE, "width": SIZE}).save_pretrained(out_dir)
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    print(build_shapes(out / "shapes"))
    print(build_tiny_clip(out / "tiny_clip"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
