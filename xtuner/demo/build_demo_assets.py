"""Regenerate the offline demo assets in ``xtuner/demo``.

Usage::

    python -m xtuner.demo.build_demo_assets [--output-dir DIR]

Writes, under ``DIR`` (default: the installed ``xtuner/demo`` directory):

* ``data/colorist.jsonl``: one record per CSS named colour (141: the 148 CSS names less the
  seven ``grey`` spellings of ``gray`` colours), each
  ``{"conversation": [{"input": "<request naming and describing it>", "output": "#rrggbb"}]}``.
  The description is derived from the colour's hue, lightness and saturation (HLS), and the
  request wording rotates through a few templates, so every input is unique.
* ``tiny_llm/``: a byte-level BPE tokenizer (vocabulary :data:`DEMO_VOCAB_SIZE`, ChatML chat
  template, ``<s>`` BOS token) trained on that data plus
  :data:`xtuner.testing.DEFAULT_CORPUS`, and a randomly initialised ``LlamaForCausalLM``
  (hidden 128, 4 layers, 4 heads, 2 KV heads, MLP 384, float32, seed 0) saved as safetensors with
  ``generation_config.json``. It is untrained on purpose: the demo trains it.

The output is deterministic: two runs give byte-identical ``colorist.jsonl`` and
``tokenizer.json``, and identical weights with the same torch version.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

#: CSS Color Module Level 4 named colours (``name=rrggbb``), without the ``grey`` aliases.
CSS_COLORS = """
aliceblue=f0f8ff antiquewhite=faebd7 aqua=00ffff aquamarine=7fffd4 azure=f0ffff
beige=f5f5dc bisque=ffe4c4 black=000000 blanchedalmond=ffebcd blue=0000ff blueviolet=8a2be2
brown=a52a2a burlywood=deb887 cadetblue=5f9ea0 chartreuse=7fff00 chocolate=d2691e
coral=ff7f50 cornflowerblue=6495ed cornsilk=fff8dc crimson=dc143c cyan=00ffff
darkblue=00008b darkcyan=008b8b darkgoldenrod=b8860b darkgray=a9a9a9 darkgreen=006400
darkkhaki=bdb76b darkmagenta=8b008b darkolivegreen=556b2f darkorange=ff8c00
darkorchid=9932cc darkred=8b0000 darksalmon=e9967a darkseagreen=8fbc8f darkslateblue=483d8b
darkslategray=2f4f4f darkturquoise=00ced1 darkviolet=9400d3 deeppink=ff1493
deepskyblue=00bfff dimgray=696969 dodgerblue=1e90ff firebrick=b22222 floralwhite=fffaf0
forestgreen=228b22 fuchsia=ff00ff gainsboro=dcdcdc ghostwhite=f8f8ff gold=ffd700
goldenrod=daa520 gray=808080 green=008000 greenyellow=adff2f honeydew=f0fff0 hotpink=ff69b4
indianred=cd5c5c indigo=4b0082 ivory=fffff0 khaki=f0e68c lavender=e6e6fa
lavenderblush=fff0f5 lawngreen=7cfc00 lemonchiffon=fffacd lightblue=add8e6
lightcoral=f08080 lightcyan=e0ffff lightgoldenrodyellow=fafad2 lightgray=d3d3d3
lightgreen=90ee90 lightpink=ffb6c1 lightsalmon=ffa07a lightseagreen=20b2aa
lightskyblue=87cefa lightslategray=778899 lightsteelblue=b0c4de lightyellow=ffffe0
lime=00ff00 limegreen=32cd32 linen=faf0e6 magenta=ff00ff maroon=800000
mediumaquamarine=66cdaa mediumblue=0000cd mediumorchid=ba55d3 mediumpurple=9370db
mediumseagreen=3cb371 mediumslateblue=7b68ee mediumspringgreen=00fa9a
mediumturquoise=48d1cc mediumvioletred=c71585 midnightblue=191970 mintcream=f5fffa
mistyrose=ffe4e1 moccasin=ffe4b5 navajowhite=ffdead navy=000080 oldlace=fdf5e6 olive=808000
olivedrab=6b8e23 orange=ffa500 orangered=ff4500 orchid=da70d6 palegoldenrod=eee8aa
palegreen=98fb98 paleturquoise=afeeee palevioletred=db7093 papayawhip=ffefd5
peachpuff=ffdab9 peru=cd853f pink=ffc0cb plum=dda0dd powderblue=b0e0e6 purple=800080
rebeccapurple=663399 red=ff0000 rosybrown=bc8f8f royalblue=4169e1 saddlebrown=8b4513
salmon=fa8072 sandybrown=f4a460 seagreen=2e8b57 seashell=fff5ee sienna=a0522d silver=c0c0c0
skyblue=87ceeb slateblue=6a5acd slategray=708090 snow=fffafa springgreen=00ff7f
steelblue=4682b4 tan=d2b48c teal=008080 thistle=d8bfd8 tomato=ff6347 turquoise=40e0d0
violet=ee82ee wheat=f5deb3 white=ffffff whitesmoke=f5f5f5 yellow=ffff00 yellowgreen=9acd32
"""

# Words the concatenated CSS names are made of; names split into the fewest of these.
_NAME_WORDS = frozenset(
    """
    alice almond antique aqua aquamarine azure beige bisque black blanched blue blush brown
    burlywood cadet chartreuse chiffon chocolate coral corn cornflower cream crimson cyan dark
    deep dim dodger drab firebrick floral forest fuchsia gainsboro ghost gold goldenrod gray green
    honeydew hot indian indigo ivory khaki lace lavender lawn lemon light lime linen magenta
    maroon medium midnight mint misty moccasin navajo navy old olive orange orchid pale papaya
    peach peru pink plum powder puff purple rebecca red rose rosy royal saddle salmon sandy sea
    seashell sienna silk silver sky slate smoke snow spring steel tan teal thistle tomato
    turquoise violet wheat whip white yellow
    """.split()
)

#: Request wordings, chosen by the colour's index so the data is deterministic.
REQUEST_TEMPLATES = (
    "Give me the hex code for {name}, {desc}.",
    "What is the hex code of {name}? It is {desc}.",
    "I need {name}, {desc}. Which hex code is it?",
    "Hex code for {name}, {desc}, please.",
    "Please write {name} as a hex code; it is {desc}.",
    "Which hex value is {name}, {desc}?",
)

#: Target vocabulary of the demo tokenizer.
DEMO_VOCAB_SIZE = 768

#: Architecture of the demo model (``build_tiny_llm`` keyword arguments).
DEMO_MODEL_KWARGS = {
    "arch": "llama",
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 384,
    "max_position_embeddings": 2048,
    "seed": 0,
    "tie_word_embeddings": False,
}


def parse_css_colors(table: str = CSS_COLORS) -> list[tuple[str, str]]:
    """Return ``[(css_name, "#rrggbb"), ...]`` from a ``name=rrggbb`` table, in table order."""
    pairs = []
    for item in table.split():
        name, hex_code = item.split("=")
        if not re.fullmatch(r"[0-9a-f]{6}", hex_code):
            raise ValueError(f"bad hex code {hex_code!r} for colour {name!r}")
        pairs.append((name, "#" + hex_code))
    return pairs


def split_name(css_name: str) -> str:
    """Split a CSS name into words: ``"lightskyblue"`` -> ``"light sky blue"``.

    Uses the segmentation into the fewest words of :data:`_NAME_WORDS` (so ``"seashell"`` stays
    one word but ``"seagreen"`` becomes ``"sea green"``).

    Raises:
        ValueError: If the name cannot be split into known words.
    """
    n = len(css_name)
    # best[i]: fewest-word split of css_name[:i], or None if there is none.
    best: list[list[str] | None] = [[]] + [None] * n
    for end in range(1, n + 1):
        for start in range(end):
            head = best[start]
            word = css_name[start:end]
            if head is not None and word in _NAME_WORDS:
                if best[end] is None or len(head) + 1 < len(best[end]):
                    best[end] = head + [word]
    if best[n] is None:
        raise ValueError(f"cannot split colour name {css_name!r} into known words")
    return " ".join(best[n])


def _hue_name(hue_deg: float, lightness: float, saturation: float) -> str:
    """Name the hue, folding in lightness and saturation where English has a word (pink, ...)."""
    hue_limits = (
        (12, "red"),
        (42, "orange"),
        (68, "yellow"),
        (90, "yellow-green"),
        (155, "green"),
        (190, "cyan"),
        (250, "blue"),
        (285, "violet"),
        (320, "magenta"),
        (345, "pink"),
        (360, "red"),
    )
    name = next((name for limit, name in hue_limits if hue_deg < limit), "red")
    if name == "red" and lightness > 0.7:
        return "pink"
    if name == "magenta" and lightness < 0.35:
        return "purple"
    if name == "orange" and lightness < 0.45:
        return "brown"
    if name == "red" and lightness < 0.45 and saturation < 0.7:
        return "brown"
    if name == "yellow" and lightness < 0.4:
        return "olive"
    return name


def describe_color(hex_code: str) -> str:
    """Describe a colour in words from its HLS coordinates, e.g. ``"a pale, soft blue"``."""
    r, g, b = (int(hex_code[i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue, lightness, saturation = colorsys.rgb_to_hls(r, g, b)
    chroma = max(r, g, b) - min(r, g, b)
    if chroma < 0.02:
        if lightness > 0.98:
            return "pure white"
        if lightness < 0.02:
            return "pure black"
        if lightness > 0.9:
            return "a neutral off-white"
        shade = "light" if lightness > 0.7 else "dark" if lightness < 0.45 else "medium"
        return f"a {shade}, neutral grey"
    hue_word = _hue_name(hue * 360, lightness, saturation)
    if lightness > 0.9:
        return f"an off-white with a hint of {hue_word}"
    if lightness < 0.2:
        shade = "very dark"
    elif lightness < 0.35:
        shade = "dark"
    elif lightness < 0.6:
        shade = "medium"
    elif lightness < 0.8:
        shade = "light"
    else:
        shade = "pale"
    if saturation < 0.25:
        tone = "greyish"
    elif saturation < 0.55:
        tone = "soft"
    elif saturation < 0.9:
        tone = "rich"
    else:
        tone = "vivid"
    return f"a {shade}, {tone} {hue_word}"


def build_colorist_records() -> list[dict]:
    """Return the colorist dataset as XTuner conversation records (deterministic)."""
    records = []
    for index, (css_name, hex_code) in enumerate(parse_css_colors()):
        template = REQUEST_TEMPLATES[index % len(REQUEST_TEMPLATES)]
        text = template.format(name=split_name(css_name), desc=describe_color(hex_code))
        records.append({"conversation": [{"input": text, "output": hex_code}]})
    inputs = [r["conversation"][0]["input"] for r in records]
    if len(set(inputs)) != len(inputs):
        raise AssertionError("colorist inputs are not unique")
    return records


def write_colorist(path: Path, records: list[dict]) -> None:
    """Write ``records`` as JSON lines (UTF-8, ``\\n`` line ends, stable key order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def build_tiny_llm_dir(model_dir: Path, records: list[dict]) -> str:
    """Train the demo tokenizer on ``records`` and save it with a fresh random Llama."""
    from xtuner.testing import DEFAULT_CORPUS, build_tiny_llm, train_tiny_tokenizer

    texts = [
        turn[key] for r in records for turn in r["conversation"] for key in ("input", "output")
    ]
    # The ChatML role headers, so "user\n" / "assistant\n" become whole tokens.
    texts += ["system\n", "user\n", "assistant\n"] * 8
    texts += list(DEFAULT_CORPUS)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    # A BOS token (Llama style): XTuner's encode rules prepend it for non-Qwen tokenizers.
    tokenizer = train_tiny_tokenizer(texts, model_dir, vocab_size=DEMO_VOCAB_SIZE, bos_token="<s>")
    path = build_tiny_llm(model_dir, tokenizer, **DEMO_MODEL_KWARGS)
    # save_pretrained writes the weights 0600; a package file must be readable by everyone.
    for file in model_dir.iterdir():
        os.chmod(file, 0o644)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate ``data/colorist.jsonl`` and ``tiny_llm/`` (see the module docstring)."""
    from xtuner.demo import DEMO_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        default=DEMO_DIR,
        help="where to write data/ and tiny_llm/ (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    records = build_colorist_records()
    write_colorist(out / "data" / "colorist.jsonl", records)
    model_dir = build_tiny_llm_dir(out / "tiny_llm", records)
    print(f"wrote {len(records)} records to {out / 'data' / 'colorist.jsonl'}")
    print(f"wrote the demo model and tokenizer to {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
