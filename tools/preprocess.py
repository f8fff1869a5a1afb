"""``xtuner preprocess``: three tools; the first argument decides which.

  xtuner preprocess CONFIG --save-dir DIR     tokenize and pack a config's training data
  xtuner preprocess arxiv SRC DST [--start-date YYYY-MM-DD] [--categories C ...]
                                              select arXiv metadata by category and date
                                              into a JSON list (XTuner v0's tool)
  xtuner preprocess refcoco --ann-path DIR --image-path DIR --save-path DIR
                                              RefCOCO/+/g train refs to DIR/train.json (v0)

`xtuner preprocess arxiv -h` and `xtuner preprocess refcoco -h` show their options.

``xtuner preprocess CONFIG --save-dir DIR``: process a config's training data ahead of time.

Runs the config's training dataset pipeline (load, map fn, template, tokenize, pack) once and
writes the result to DIR with a manifest of the sha256 and size of every file. Train from it
by pointing the config (a copy of it: `xtuner copy-cfg`) at it, at the end of the file:

    from xtuner.dataset import load_processed_dataset
    train_dataloader.update(dataset=dict(type=load_processed_dataset, path=DIR))

The loader checks every file against the manifest and refuses a missing or corrupted DIR.

The automatic cache (``$XTUNER_CACHE_DIR``, default ``~/.cache/xtuner/datasets``) that
``xtuner train`` fills is managed here too:

    xtuner preprocess --list-cache                 # size, rows, last use, data files
    xtuner preprocess --clean-cache --keep 3       # keep the 3 most recently used
    xtuner preprocess --clean-cache --older-than 30  # drop what was unused for 30 days
    xtuner preprocess --clean-cache                # everything
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from xtuner.utils.cfg_options import CfgOptionsAction
from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.remote_code import add_trust_remote_code_argument

# First arguments naming v0's raw-data converters, and the module whose main() runs them.
SUB_TOOLS = {"arxiv": "xtuner.dataset.preprocess.arxiv",
             "refcoco": "xtuner.dataset.preprocess.refcoco"}


def parse_args(argv: Sequence[str] | None):
    import argparse

    parser = ArgumentParser(prog="xtuner preprocess", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?",
                        help="config file or catalog name (see `xtuner list-cfg`), or "
                        "'arxiv' / 'refcoco' for v0's converters")
    parser.add_argument("--save-dir", metavar="DIR",
                        help="where the processed dataset is written (replaced if present)")
    cache = parser.add_argument_group("the automatic cache of processed datasets")
    cache.add_argument("--list-cache", action="store_true",
                       help="list its folders, least recently used first, and exit")
    cache.add_argument("--clean-cache", action="store_true",
                       help="delete its folders (all, or as --keep / --older-than say)")
    cache.add_argument("--keep", type=int, metavar="N",
                       help="with --clean-cache: keep the N most recently used folders")
    cache.add_argument("--older-than", type=float, metavar="DAYS",
                       help="with --clean-cache: delete folders unused for more than DAYS")
    add_trust_remote_code_argument(parser, "the tokenizer folder's", config=True)
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. "
                        "train_dataloader.dataset.max_length=4096")
    return parser.parse_args(argv)


def _manage_cache(args) -> int:
    from xtuner.dataset.cache import cache_root
    from xtuner.dataset.cache_admin import clean_cache, format_entries, list_cache
    from xtuner.utils.errors import UsageError

    if args.config or args.save_dir:
        raise UsageError("--list-cache and --clean-cache take no CONFIG or --save-dir")
    if args.keep is not None and args.keep < 0 or (args.older_than or 0) < 0:
        raise UsageError("--keep and --older-than take numbers of 0 or more")
    if args.list_cache:
        print(f"{cache_root()}:")
        print(format_entries(list_cache()))
        return 0
    removed = clean_cache(keep=args.keep, older_than_days=args.older_than)
    freed = sum(e.size for e in removed)
    print(f"removed {len(removed)} folder{'s' * (len(removed) != 1)} from {cache_root()} "
          f"({freed / 2**20:.1f} MB); {len(list_cache())} left")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUB_TOOLS:
        import importlib

        return importlib.import_module(SUB_TOOLS[argv[0]]).main(argv[1:])
    args = parse_args(argv)
    from xtuner.utils.errors import UsageError

    if args.list_cache or args.clean_cache:
        return _manage_cache(args)
    if args.keep is not None or args.older_than is not None:
        raise UsageError("--keep and --older-than go with --clean-cache")
    if not args.config or not args.save_dir:
        raise UsageError("give CONFIG and --save-dir DIR (or --list-cache / --clean-cache)")
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.paths import resolve_config

    cfg = load_config(resolve_config(args.config))
    for note in merge_cfg_options(cfg, args.cfg_options):
        print(f"note: {note}", file=sys.stderr)
    from xtuner.dataset.specs import train_dataset_cfg
    from xtuner.engine.train_setup import check_data_files
    from xtuner.utils.remote_code import CONFIG_HINT, remote_code_errors, set_trust_remote_code

    set_trust_remote_code(cfg, args.trust_remote_code)
    dataset_cfg, where = train_dataset_cfg(cfg, "preprocess")
    check_data_files(cfg)  # a missing file: one line naming the key, as `xtuner train`
    with remote_code_errors(f"the tokenizer of {args.config}", CONFIG_HINT):
        return _preprocess(args, dataset_cfg, where)


def _preprocess(args, dataset_cfg, where) -> int:
    from pathlib import Path

    from xtuner.dataset.cache import MANIFEST, save_processed
    from xtuner.dataset.huggingface import build
    from xtuner.utils.errors import ConfigError, UsageError

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
