"""``xtuner convert split SRC DST``: rewrite a model directory to one tensor per shard.

XTuner v0's behaviour for ``pytorch_model.bin`` models, extended to every weight format a
model directory uses: a single file or a sharded index, safetensors or ``.bin``; the output
keeps the format (``model-00001-of-0000N.safetensors`` + ``model.safetensors.index.json``, or
``pytorch_model-…bin`` + ``pytorch_model.bin.index.json``). Other files are copied. Unless
``--no-verify`` every written tensor is read back and compared with the source. DST appears
only when everything succeeded.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from xtuner.utils.cli import ArgumentParser, run_main


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner convert split", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src_dir", metavar="SRC", help="model directory to split")
    parser.add_argument("dst_dir", metavar="DST", help="output directory")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip reading the written tensors back")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DST if it exists and is not empty")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from xtuner.utils.errors import CheckpointError
    from xtuner.utils.paths import check_output_location

    src = Path(args.src_dir).expanduser()
    if not src.is_dir():
        raise CheckpointError(f"source model directory not found: {src}")
    check_output_location(args.dst_dir, {"SRC": args.src_dir}, "DST")
    from xtuner.model.export import atomic_output_dir, check_output_dir, find_weights, split_shards

    find_weights(src)  # fail before creating anything
    dst = check_output_dir(args.dst_dir, args.overwrite, "DST")
    with atomic_output_dir(dst, args.overwrite, "DST") as tmp:
        index = split_shards(src, tmp, verify=args.verify)
    print(f"Wrote {len(index['weight_map'])} shards (one tensor each) to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner convert split"))
