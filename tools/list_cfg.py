"""``xtuner list-cfg``: list the shipped configs (and DeepSpeed JSONs) by name."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.paths import config_catalog


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner list-cfg", description=__doc__)
    parser.add_argument("-p", "--pattern", default=None,
                        help="show only names containing PATTERN (case-insensitive)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = sorted(config_catalog())
    if args.pattern:
        names = [n for n in names if args.pattern.lower() in n.lower()]
    if not names:
        print(f"no config matches '{args.pattern}'", file=sys.stderr)
        return 1
    print("\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner list-cfg"))
