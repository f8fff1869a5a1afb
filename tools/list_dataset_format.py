"""``xtuner list-dataset-format``: the source data formats and the map fn each one needs.

Every key of ``DATASET_FORMAT_MAPPING`` is listed, plus XTuner's own ``conversation`` format
(``dataset_map_fn=None``), each with a one-line description and an example record.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from xtuner.utils.cli import ArgumentParser, run_main


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner list-dataset-format", description=__doc__)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parse_args(argv)
    from xtuner.dataset.formats import DATA_FORMATS
    from xtuner.dataset.map_fns.dataset_map_fns import DATASET_FORMAT_MAPPING

    blocks = []
    for name in ["conversation", *DATASET_FORMAT_MAPPING]:
        fmt = DATA_FORMATS.get(name)
        if fmt is None:  # a map fn added without a declared format
            fn = DATASET_FORMAT_MAPPING[name]
            blocks.append(f"{name}  (dataset_map_fn={fn.__name__})\n    no declared format: "
                          "records are checked only for being JSON objects the map fn accepts")
            continue
        map_fn = fmt.map_fn or "None"
        example = json.dumps(fmt.example, ensure_ascii=False)
        blocks.append(f"{name}  (dataset_map_fn={map_fn})\n    {fmt.description}\n"
                      f"    example: {example}")
    print("\n".join(blocks))
    print("\nCheck a config's data with `xtuner check-custom-dataset CONFIG`.")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner list-dataset-format"))
