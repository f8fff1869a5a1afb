"""``xtuner preprocess arxiv SRC DST``: select arXiv metadata by category and date (v0).

SRC is the Kaggle arXiv metadata snapshot (``arxiv-metadata-oai-snapshot.json``, one JSON
object per line). A record is kept when one of its space-separated ``categories`` is among
``--categories`` and its ``update_date`` is on or after ``--start-date``, exactly as XTuner
v0's ``tools/data_preprocess/arxiv.py`` did. DST receives the kept records as one JSON list
(v0's format, read by ``arxiv_map_fn`` configs).

Unlike v0, a line that is not JSON, or a record without ``categories``/``update_date`` or
with a date that is not YYYY-MM-DD, stops the run with ``SRC:LINE`` named; with
``--skip-bad-lines`` such lines are skipped and each is reported as ``SRC:LINE`` on stderr.
Blank lines are ignored.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from xtuner.utils.errors import DataError, UsageError

__all__ = ["DEFAULT_CATEGORIES", "DEFAULT_START_DATE", "read_arxiv_metadata", "filter_arxiv",
           "main"]

DEFAULT_CATEGORIES = ("cs.AI", "cs.CL", "cs.CV")
DEFAULT_START_DATE = "2020-01-01"
_DATE = "%Y-%m-%d"


def _parse_date(text: str, what: str) -> datetime:
    try:
        return datetime.strptime(text, _DATE)
    except (TypeError, ValueError):
        raise DataError(f"{what}: date {text!r} is not YYYY-MM-DD") from None


def read_arxiv_metadata(path: str | Path, skip_bad_lines: bool = False,
                        warn=None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each line of an arXiv metadata JSONL file.

    Args:
        path: the JSONL file.
        skip_bad_lines: skip (and report through ``warn``) lines that are not a JSON object
            with string ``categories`` and a YYYY-MM-DD ``update_date``, instead of raising.
        warn: called with one message per skipped line (default: print to stderr).

    Raises:
        DataError: a bad line (``path:line`` and what is wrong), unless ``skip_bad_lines``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"arxiv metadata file not found: {path}")
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = _check_record(line, f"{path}:{number}")
            except DataError as exc:
                if not skip_bad_lines:
                    raise DataError(f"{exc} (--skip-bad-lines skips such lines)") from None
                warn(f"skipped {exc}")
                continue
            yield number, record


def _check_record(line: str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(record).__name__}")
    missing = [k for k in ("categories", "update_date") if k not in record]
    if missing:
        raise DataError(f"{where}: the record has no {' or '.join(map(repr, missing))}")
    if not isinstance(record["categories"], str):
        raise DataError(f"{where}: 'categories' should be a space-separated string, found "
                        f"{type(record['categories']).__name__}")
    _parse_date(record["update_date"], f"{where}: 'update_date'")
    return record


def filter_arxiv(records: Iterable[dict], categories: Sequence[str] = DEFAULT_CATEGORIES,
                 start_date: str = DEFAULT_START_DATE) -> list[dict]:
    """The records v0 keeps: a category in ``categories``, ``update_date >= start_date``."""
    wanted = set(categories)
    since = _parse_date(start_date, "--start-date")
    return [r for r in records
            if wanted & set(r["categories"].split())
            and datetime.strptime(r["update_date"], _DATE) >= since]


def parse_args(argv: Sequence[str] | None):
    from xtuner.utils.cli import ArgumentParser

    parser = ArgumentParser(prog="xtuner preprocess arxiv", description=__doc__,
                            formatter_class=_raw_formatter())
    parser.add_argument("src_file", metavar="SRC", help="arXiv metadata JSONL file")
    parser.add_argument("dst_file", metavar="DST", help="output JSON file (a list of records)")
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES),
                        help="keep records in any of these categories (default: %(default)s)")
    parser.add_argument("--start-date", default=DEFAULT_START_DATE, metavar="YYYY-MM-DD",
                        help="keep records updated on or after this day (default: %(default)s)")
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="skip malformed lines (each reported as SRC:LINE) instead of "
                        "stopping at the first one")
    return parser.parse_args(argv)


def _raw_formatter():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        _parse_date(args.start_date, "--start-date")
    except DataError as exc:
        raise UsageError(str(exc)) from None
    records = (r for _, r in read_arxiv_metadata(args.src_file, args.skip_bad_lines))
    kept = filter_arxiv(records, args.categories, args.start_date)
    dst = Path(args.dst_file)
    if dst.parent and not dst.parent.is_dir():
        raise UsageError(f"the folder of DST does not exist: {dst.parent}")
    with open(dst, "w", encoding="utf-8") as file:
        json.dump(kept, file)
    print(f"Save to {dst}\n{len(kept)} items")
    return 0
