"""``xtuner copy-cfg NAME DIR``: write a shipped config to ``DIR/NAME_copy.py`` for editing.

A self-contained config is copied as it is (comments included); one that inherits through
``_base_`` is flattened, everything it inherits written into the one file, so the copy runs
from any directory.
"""
from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from xtuner.engine.config import flatten_config
from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.errors import UsageError
from xtuner.utils.paths import resolve_config


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner copy-cfg", description=__doc__)
    parser.add_argument("config_name", help="catalog name (see `xtuner list-cfg`) or a file")
    parser.add_argument("save_dir", help="folder to write NAME_copy.py into")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    source = resolve_config(args.config_name)
    save_dir = Path(args.save_dir)
    if save_dir.exists() and not save_dir.is_dir():
        raise UsageError(f"save_dir '{save_dir}' exists and is not a folder")
    save_dir.mkdir(parents=True, exist_ok=True)
    target = save_dir / f"{source.stem}_copy.py"
    text = source.read_text(encoding="utf-8")
    if "read_base" in text or "_base_" in text:
        flatten_config(source, target)  # inherits: write everything into one file
    else:
        shutil.copyfile(source, target)  # self-contained: keep its comments and layout
    print(f"Copied {source.stem} to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner copy-cfg"))
