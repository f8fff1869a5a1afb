"""``xtuner log-dataset CONFIG``: build a config's training dataset and print its first samples.

``--show text`` decodes ``input_ids``; ``masked_text`` shows what the loss sees: untrained
tokens as ``[-100 xN]`` runs and trained text between ``[[`` and ``]]``; ``input_ids`` and
``labels`` print the id lists; ``all`` prints the four. ``-n N`` shows the first N samples
(before packing); ``--packed`` shows the packed rows that training sees instead.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from xtuner.utils.cfg_options import CfgOptionsAction
from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.remote_code import add_trust_remote_code_argument

SHOW = ("text", "masked_text", "input_ids", "labels", "all")


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner log-dataset", description=__doc__)
    parser.add_argument("config", help="config file or catalog name (see `xtuner list-cfg`)")
    parser.add_argument("--show", choices=SHOW, default="text",
                        help="what to print for each sample (default: text)")
    parser.add_argument("-n", type=int, default=1, metavar="N",
                        help="print the first N samples (default 1)")
    parser.add_argument("--packed", action="store_true",
                        help="show packed rows (several samples joined up to max_length, as "
                        "training sees them) instead of single samples")
    add_trust_remote_code_argument(parser, "the tokenizer folder's", config=True)
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config keys")
    return parser.parse_args(argv)


def _heading(title: str) -> str:
    return "#" * 20 + f"   {title}   " + "#" * 20


def _unpack(dataset_cfg: dict) -> bool:
    """Switch off ``pack_to_max_length`` in the dataset (or each member of a
    ``ConcatDataset``); return whether any was on."""
    members = dataset_cfg.get("datasets") if isinstance(dataset_cfg.get("datasets"), list) \
        else [dataset_cfg]
    packed = False
    for member in members:
        if isinstance(member, dict) and member.get("pack_to_max_length"):
            member["pack_to_max_length"] = False
            if member.get("use_varlen_attn"):  # needs packed rows; irrelevant for display
                member["use_varlen_attn"] = False
            packed = True
    return packed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from xtuner.utils.remote_code import remote_code_errors

    with remote_code_errors(f"the tokenizer of {args.config}",
                            "pass --trust-remote-code (or set trust_remote_code=True in the "
                            "config's tokenizer)"):
        return _show(args)


def _logs_to_stderr() -> None:
    """Standard output carries the samples; the pipeline's log lines (cache saved or reused,
    packing) go to standard error, like the notes."""
    import logging

    from mmengine.logging import MMLogger

    for handler in MMLogger.get_current_instance().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def _show(args) -> int:
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.errors import ConfigError, UsageError
    from xtuner.utils.paths import resolve_config

    if args.n < 1:
        raise UsageError("-n must be at least 1")
    _logs_to_stderr()
    cfg = load_config(resolve_config(args.config))
    for note in merge_cfg_options(cfg, args.cfg_options):
        print(f"note: {note}", file=sys.stderr)
    from xtuner.dataset.specs import train_dataset_cfg
    from xtuner.utils.remote_code import set_trust_remote_code

    set_trust_remote_code(cfg, args.trust_remote_code)
    dataset_cfg, where = train_dataset_cfg(cfg, "log")
    if not args.packed and _unpack(dataset_cfg):
        print("note: showing samples before packing; --packed shows the packed rows training "
              "sees", file=sys.stderr)
    tokenizer_cfg = cfg.get("tokenizer") or dataset_cfg.get("tokenizer")
    if tokenizer_cfg is None:
        raise ConfigError("the config has no tokenizer to decode the samples with")

    from datasets.exceptions import DatasetGenerationError

    from xtuner.dataset.huggingface import build
    from xtuner.dataset.render import render_masked
    from xtuner.utils.errors import DataError

    tokenizer = build(tokenizer_cfg)
    try:
        dataset = build(dataset_cfg)
    except DatasetGenerationError as exc:
        cause = exc.__cause__ or exc
        raise DataError(f"datasets cannot load the data ({type(cause).__name__}: "
                        f"{str(cause).splitlines()[0] if str(cause) else ''}); "
                        f"`xtuner check-custom-dataset {args.config}` names the broken "
                        "records") from exc
    if len(dataset) == 0:
        raise ConfigError(f"{where} is empty: every record was dropped; run "
                          "`xtuner check-custom-dataset` on the config")
    for index in range(min(args.n, len(dataset))):
        sample = dataset[index]
        ids, labels = list(sample["input_ids"]), sample.get("labels")
        suffix = ((f" (packed row {index})" if args.packed else f" {index}") if args.n > 1
                  else "")
        if args.show in ("text", "all"):
            print(_heading("text" + suffix))
            print(tokenizer.decode(ids))
        if args.show in ("masked_text", "all"):
            print(_heading("text(masked)" + suffix))
            print(render_masked(tokenizer, ids, labels) if labels is not None
                  else "(the sample has no labels)")
        if args.show in ("input_ids", "all"):
            print(_heading("input_ids" + suffix))
            print(ids)
        if args.show in ("labels", "all"):
            print(_heading("labels" + suffix))
            print(list(labels) if labels is not None else "(the sample has no labels)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner log-dataset"))
