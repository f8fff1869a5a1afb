"""Regenerate the offline preference demo data in ``xtuner/demo/data``.

Usage::

    python -m xtuner.demo.build_preference_demo [--output PATH]

Writes ``colorist_preference.jsonl`` (default: next to ``colorist.jsonl`` in the installed
``xtuner/demo/data``): for every request of the colorist data, ``PAIRS_PER_REQUEST`` records
``{"prompt": [user message], "chosen": [assistant: the right hex code], "rejected":
[assistant: the hex code of another colour]}``, the wrong colours drawn with a fixed seed.
With the tiny demo Llama, ``demo_tiny_dpo_colorist_e6`` learns on a CPU in about a minute and
a half to prefer the right code (its logged ``reward_acc`` climbs from 0 towards 1).
Deterministic.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

__all__ = ["COLORIST_PREFERENCE_PATH", "PAIRS_PER_REQUEST", "preference_records", "main"]

#: The preference demo data shipped with xtuner.
COLORIST_PREFERENCE_PATH: str = str(Path(__file__).resolve().parent / "data"
                                    / "colorist_preference.jsonl")
PAIRS_PER_REQUEST = 2


def preference_records(colorist_path: str | Path, seed: int = 0) -> list[dict]:
    """The preference records built from the colorist data (see the module docstring)."""
    samples = []
    with open(colorist_path, encoding="utf-8") as f:
        for line in f:
            turn = json.loads(line)["conversation"][0]
            samples.append((turn["input"], turn["output"]))
    codes = sorted({code for _, code in samples})
    rng = random.Random(seed)
    records = []
    for request, code in samples:
        wrong = rng.sample([c for c in codes if c != code], PAIRS_PER_REQUEST)
        for other in wrong:
            records.append({"prompt": [{"role": "user", "content": request}],
                            "chosen": [{"role": "assistant", "content": code}],
                            "rejected": [{"role": "assistant", "content": other}]})
    return records


def main(argv=None) -> int:
    from xtuner.demo import COLORIST_DATA_PATH

    parser = argparse.ArgumentParser(prog="python -m xtuner.demo.build_preference_demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=COLORIST_PREFERENCE_PATH,
                        help="the JSONL file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    records = preference_records(COLORIST_DATA_PATH)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} preference pairs to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
