"""Evaluation fixtures made in code from the LLaVA demo's pictures (shared by the tests)."""
from __future__ import annotations

import base64
import io
import random
from pathlib import Path

QUESTION = "What is in the picture?"  # the demo's trained question


def _b64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def shapes_mmbench_tsv(path: Path, rows: int = 12, seed: int = 2024) -> list[dict]:
    """An MMBench dev TSV: the demo's question about an unseen picture; the options are four
    colour names, the right one at a rotating letter. Returns the rows."""
    import pandas as pd

    from xtuner.demo.build_llava_demo import COLOURS, SHAPES, draw

    rng = random.Random(seed)
    names = list(COLOURS)
    out = []
    for i in range(rows):
        shape, colour = SHAPES[i % len(SHAPES)], names[i % len(names)]
        others = [c for c in names if c != colour]
        rng.shuffle(others)
        letter = "ABCD"[i % 4]
        choices = others[:3]
        choices.insert("ABCD".index(letter), colour)
        out.append({"index": i, "question": QUESTION, "hint": None,
                    **dict(zip("ABCD", choices)),
                    "answer": letter, "category": shape,
                    "image": _b64(draw(shape, COLOURS[colour], rng))})
    pd.DataFrame(out).to_csv(path, sep="\t", index=False)
    return out
