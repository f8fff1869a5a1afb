"""``xtuner preprocess CONFIG --save-dir DIR``: process a config's training data ahead of time.

Runs the config's training dataset pipeline (load, map fn, template, tokenize, pack) once and
writes the result to DIR with a manifest of the sha256 and size of every file. Train from it
by pointing the config (a copy of it: `xtuner copy-cfg`) at it, at the end of the file:

    from xtuner.dataset import load_processed_dataset
    train_dataloader.update(dataset=dict(type=load_processed_dataset, path=DIR))

The loader checks every file against the manifest and refuses a missing or corrupted DIR.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from mmengine.config import DictAction

from xtuner.utils.cli import ArgumentParser, run_main


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner preprocess", description=__doc__)
    parser.add_argument("config", help="config file or catalog name (see `xtuner list-cfg`)")
    parser.add_argument("--save-dir", required=True, metavar="DIR",
                        help="where the processed dataset is written (replaced if present)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. "
                        "train_dataloader.dataset.max_length=4096")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.errors import ConfigError
    from xtuner.utils.paths import resolve_config

    cfg = load_config(resolve_config(args.config))
    for note in merge_cfg_options(cfg, args.cfg_options):
        print(f"note: {note}", file=sys.stderr)
    if str(cfg.get("framework", "mmengine")).lower() == "huggingface":
        dataset_cfg, where = cfg.get("train_dataset"), "train_dataset"
    else:
        loader = cfg.get("train_dataloader")
        dataset_cfg = loader.get("dataset") if isinstance(loader, dict) else None
        where = "train_dataloader.dataset"
    if not isinstance(dataset_cfg, dict) or "type" not in dataset_cfg:
        raise ConfigError(f"the config has no {where} to preprocess")

    from pathlib import Path

    from xtuner.dataset.cache import MANIFEST, save_processed
    from xtuner.dataset.huggingface import build
    from xtuner.utils.errors import UsageError

    save_dir = Path(args.save_dir)
    # DIR is replaced: never delete a folder that is not an earlier preprocess output.
    if save_dir.exists() and (not save_dir.is_dir() or (any(save_dir.iterdir())
                                                         and not (save_dir / MANIFEST).exists())):
        raise UsageError(f"--save-dir {save_dir} exists and is not a folder written by "
                         "`xtuner preprocess`; choose an empty or new folder")

    dataset = build(dataset_cfg)
    if not hasattr(dataset, "save_to_disk"):
        raise ConfigError(f"{where} builds a {type(dataset).__name__}; preprocess writes "
                          "datasets built by process_hf_dataset")
    folder = save_processed(dataset, save_dir, {"config": str(args.config)})
    print(f"wrote {len(dataset)} rows to {folder}")
    if "length" in dataset.column_names and len(dataset):
        lengths = dataset["length"]
        print(f"  tokens {sum(lengths)}, row length min {min(lengths)}, "
              f"mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}")
        max_length = dataset_cfg.get("max_length")
        if dataset_cfg.get("pack_to_max_length", True) and max_length:
            print(f"  packing efficiency {sum(lengths) / (len(lengths) * max_length):.1%} "
                  f"(max_length {max_length})")
    print("Train from it with, in the config:\n"
          "  from xtuner.dataset import load_processed_dataset\n"
          f"  train_dataloader.update(dataset=dict(type=load_processed_dataset, "
          f"path={str(folder)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner preprocess"))
