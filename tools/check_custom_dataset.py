"""``xtuner check-custom-dataset CONFIG``: check every record of a config's training data.

Reads the local files the config's training dataset loads (each member of a
``ConcatDataset``), checks each record against the format its ``dataset_map_fn`` expects,
runs it through the map fn, the prompt template and the tokenizer, and prints each problem
as ``file:line: error|warning: kind: detail``, then a summary (records kept and dropped,
token lengths, truncation, packing) and one decoded sample with its trained spans marked.

``LLaVADataset`` data is checked the same way plus its images: a missing or undecodable
file, more ``<image>`` placeholders (after the map fn) than images, a sample longer than
``max_length + image_tokens`` once its images are features. ``build_preference_dataset`` data
is checked line by line as ``load_jsonl_dataset`` and the map fn see it, then tokenized with
the tokenizer's chat template: pairs with no response token within ``max_length``, or longer
than ``max_packed_length`` when packed, are reported as the warnings of pairs training drops.
``MediaJsonlDataset`` data (encoder + LLM, e.g. time series) is tokenized record by record by
its ``tokenize_fn`` and its media loaded: a missing media file, an unsupported suffix, an
unreadable or too short signal, placeholders that do not match the media parts, special
tokens typed in the text, media that do not fit ``max_length`` and non-JSON lines are each
one error line, in the words ``MediaJsonlDataset`` stops training with.

Training gives every record the same verdict: an error stops ``xtuner train`` with the same
``file:line`` line (unless ``XTUNER_SKIP_BAD_RECORDS=1``), a warning is logged there too, and a
record dropped here (an empty conversation a map fn returns on purpose, no token to train on
within ``max_length``) is dropped there.

Exit status: 0 when the data is usable (warnings allowed), 1 when a record has an error or no
sample is left, 2 when the config or the data source cannot be read at all.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from xtuner.utils.cfg_options import CfgOptionsAction
from xtuner.utils.cli import ArgumentParser, run_main


def _count(text: str) -> int:
    """A whole number of 0 or more (a negative ``-n`` would silently hide every problem)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner check-custom-dataset", description=__doc__)
    parser.add_argument("config", help="config file or catalog name (see `xtuner list-cfg`)")
    parser.add_argument("-n", "--max-shown", type=_count, default=20, metavar="N",
                        help="problems printed per kind; the rest are counted (default 20; "
                        "0 prints only the counts)")
    parser.add_argument("--num-proc", type=int, default=None, metavar="N",
                        help="tokenizer processes for large inputs (default: CPU count, "
                        "at most 16; 1 = no worker processes)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. "
                        "train_dataloader.dataset.dataset.data_files.train=my.jsonl")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.paths import resolve_config

    cfg = load_config(resolve_config(args.config))
    for note in merge_cfg_options(cfg, args.cfg_options):
        print(f"note: {note}", file=sys.stderr)

    from xtuner.dataset.validation import check_config

    reports = check_config(cfg, max_shown=args.max_shown, num_proc=args.num_proc,
                           progress=False if args.no_progress else None)
    errors = sum(r.errors for r in reports)
    warnings = sum(r.warnings for r in reports)
    read = sum(r.read for r in reports)
    kept = sum(r.kept for r in reports)
    print()
    if errors:
        print(f"FAILED: {errors} error{'s' * (errors != 1)} and {warnings} "
              f"warning{'s' * (warnings != 1)} in {read} records ({read - kept} dropped)")
        return 1
    no_records = [r.spec.name for r in reports if r.read == 0]
    if no_records:
        print(f"FAILED: no usable sample in {', '.join(no_records)}: the file has no records")
        return 1
    empty = [r.spec.name for r in reports if r.kept == 0]
    if empty:
        # Training stops on such data too (`no usable training sample`).
        print(f"FAILED: no usable sample in {', '.join(empty)}: every record is dropped "
              f"({warnings} warning{'s' * (warnings != 1)} in {read} records)")
        return 1
    print(f"OK: {kept} of {read} records usable, {warnings} warning{'s' * (warnings != 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner check-custom-dataset"))
