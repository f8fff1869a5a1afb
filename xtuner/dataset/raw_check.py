"""Load the raw training data after checking every record, so bad data fails early.

``process_hf_dataset`` loads its data through :func:`load_checked`. For local JSON, JSON
Lines, parquet and ``save_to_disk`` data every record is read and checked first by a
:class:`RecordScan` (valid JSON, the keys and types the map fn's declared format needs, one
JSON type per key, parquet columns), so a bad record stops the run with the ``file:line``
line ``xtuner check-custom-dataset`` prints for it (the checker reads records through the same
scan) instead of an Arrow cast error from inside ``datasets``; warnings are logged.

With ``skip`` the bad records are left out of the loaded dataset without writing any copy of
the data files: parquet and ``save_to_disk`` data are loaded whole and the good rows selected;
JSON data (which ``datasets`` cannot load at all while a line is broken) is loaded from a
generator over the good records into the ``datasets`` cache, under a fingerprint of the data
and the skipped records, so a second run reuses that entry instead of adding another.

The :class:`RecordLocator` returned with the dataset maps a row back to ``file:line`` (or
``file:row N``), for the errors the map fn, template and tokenizer may raise later
(:mod:`.guarded_map`).
"""
from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import Any

from xtuner.utils.errors import DataError

from .formats import DataFormat
from .problems import (
    ERROR,
    WRONG_TYPE,
    Problem,
    Tally,
    describe_value,
    json_type,
    log_warnings,
    no_usable_sample,
)
from .problems import raise_or_log_bad_records as _raise_or_log
from .record_checks import missing_key_problem, validate_record
from .sources import DataSource, Loc, iter_source, local_sources, parse_payload
from .specs import declared_format

__all__ = ["RecordLocator", "RecordScan", "load_checked", "check_raw_records",
           "load_llava_checked", "llava_image_problems"]

_NONE = -1  # a Loc field that is None, in the locator's int arrays
_LOC_FIELDS = ("line", "record", "row")


class RecordLocator:
    """Where each row of a loaded dataset came from: ``locator(row)`` is a :class:`Loc`.

    Positions are kept in int arrays (about 26 bytes a record), not as a million strings.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._paths: list[str] = []
        self._fields = {name: array("q") for name in _LOC_FIELDS}
        self._splits: list[str | None] = [None]
        self._split_of = array("h")
        self.total = 0

    def add(self, loc: Loc) -> None:
        """Append the next loaded row, read from ``loc``."""
        if not self._paths or self._paths[-1] != loc.path:
            self._starts.append(self.total)
            self._paths.append(loc.path)
        for name, values in self._fields.items():
            value = getattr(loc, name)
            values.append(_NONE if value is None else value)
        if loc.split not in self._splits:
            self._splits.append(loc.split)
        self._split_of.append(self._splits.index(loc.split))
        self.total += 1

    def __call__(self, row: int) -> Loc | str:
        if not 0 <= row < self.total:
            return f"row {row} of the dataset"
        path = self._paths[bisect_right(self._starts, row) - 1]
        fields = {name: values[row] for name, values in self._fields.items()}
        return Loc(path, split=self._splits[self._split_of[row]],
                   **{k: (None if v == _NONE else v) for k, v in fields.items()})


def row_of_dataset(row: int) -> str:
    """The location of a row of data that is not local files (a hub or in-memory dataset)."""
    return f"row {row} of the dataset"


# --------------------------------------------------------------------------- whole-file checks

_ARROW_TYPES = {str: ("string", "large_string", "string_view", "null"),
                list: ("list", "large_list", "list_view", "null")}


def _parquet_problems(sources: list[DataSource], fmt: DataFormat) -> list[str]:
    """Columns and column types of parquet files, checked once per file, not per row."""
    import pyarrow.parquet as pq

    problems: list[str] = []
    first: tuple[str, list[str]] | None = None
    for source in sources:
        if source.kind != "parquet":
            continue
        schema = pq.read_schema(source.path)
        columns = list(schema.names)
        for key, expected in fmt.fields.items():
            if key not in columns:
                problem = missing_key_problem("", key, dict.fromkeys(columns), tuple(fmt.fields))
                problems.append(f"{source.path}: {problem} (the columns of the file)")
            elif expected in _ARROW_TYPES:
                arrow_type = schema.field(key).type
                if str(arrow_type).split("<")[0] not in _ARROW_TYPES[expected]:
                    name = "a string" if expected is str else "a list"
                    problem = Problem.error(WRONG_TYPE, f"column '{key}' holds {arrow_type}; "
                                                        f"the '{fmt.name}' format needs {name}")
                    problems.append(f"{source.path}: {problem}")
        if first is None:
            first = (source.path, columns)
        elif sorted(columns) != sorted(first[1]):
            problems.append(f"{source.path}: error: its columns ({', '.join(columns)}) differ "
                            f"from those of {first[0]} ({', '.join(first[1])}); datasets loads "
                            "the files of a split with one schema")
    return problems


# --------------------------------------------------------------------------- per-record scan


class RecordScan:
    """Reads raw records one by one and gives each the verdict that training acts on (and
    that ``xtuner check-custom-dataset`` prints): the bad ones, the warnings, and where the
    kept ones are."""

    def __init__(self, fmt: DataFormat, loose_keys: tuple[str, ...] = ()) -> None:
        self.fmt = fmt
        self.loose_keys = loose_keys  # keys whose JSON type may vary (normalised before load)
        self.bad: list[tuple[Loc, Problem]] = []
        self.warnings: list[tuple[Loc, Problem]] = []
        self.bad_rows: list[int] = []  # rows of parquet / save_to_disk data to leave out
        self.locator = RecordLocator()
        self.rows = 0  # parquet / save_to_disk rows read
        self.keys: dict[str, None] = {}  # top-level keys in first-seen order
        self._types: dict[str, tuple[str, Loc]] = {}

    @property
    def read(self) -> int:
        return len(self.bad) + self.locator.total

    def _type_problem(self, record: dict, loc: Loc) -> Problem | None:
        # Arrow stores a key as one column of one type: a number in one JSON line and a
        # string in another stops `datasets` with a cast error that names no line.
        for key, value in record.items():
            if value is None or key in self.loose_keys:
                continue
            kind = json_type(value)
            seen = self._types.get(key)
            if seen is None:
                self._types[key] = (kind, loc)
            elif seen[0] != kind:
                return Problem.error(WRONG_TYPE, f"'{key}' is {describe_value(value)} but "
                                                 f"{seen[0]} at {seen[1]}; datasets needs one "
                                                 "type per key")
        return None

    def add(self, source: DataSource, loc: Loc, tag: str,
            payload: Any) -> tuple[Any, list[Problem], bool]:
        """Check one raw record: ``(record, problems, kept)``; a record is kept when none of
        its problems is an error."""
        record, problem = parse_payload(tag, payload)
        problems = [problem] if problem else validate_record(record, self.fmt)
        error = next((p for p in problems if p.severity == ERROR), None)
        if error is None and source.kind in ("json", "jsonl"):
            error = self._type_problem(record, loc)
            if error is not None:
                problems = [*problems, error]
        self.warnings += [(loc, p) for p in problems if p.severity != ERROR]
        if error is not None:
            self.bad.append((loc, error))
            if source.kind in ("parquet", "arrow"):
                self.bad_rows.append(self.rows)
        else:
            self.locator.add(loc)
            self.keys.update(dict.fromkeys(record))
        if source.kind in ("parquet", "arrow"):
            self.rows += 1
        return record, problems, error is None


def _scan(sources: list[DataSource], fmt: DataFormat) -> RecordScan:
    scan = RecordScan(fmt)
    for source in sources:
        for loc, tag, payload in iter_source(source):
            scan.add(source, loc, tag, payload)
    return scan


# --------------------------------------------------------------------------- loading


def _good_json_records(sources: tuple[dict, ...], bad: tuple[str, ...],
                       keys: tuple[str, ...]) -> Iterator[dict]:
    """``Dataset.from_generator`` body: the good records, every one with the same keys."""
    skipped = set(bad)
    for spec in sources:
        source = DataSource(**spec)
        for loc, tag, payload in iter_source(source):
            if str(loc) in skipped:
                continue
            record, _ = parse_payload(tag, payload)
            yield {key: record.get(key) for key in keys}


def _json_without_bad(sources: list[DataSource], scan: RecordScan):
    from datasets import Dataset

    from xtuner.version import __version__

    from .cache import source_digests

    specs = [{"path": s.path, "kind": s.kind, "split": s.split, "field": s.field}
             for s in sources]
    bad = [str(loc) for loc, _ in scan.bad]
    keys = list(scan.keys)
    material = json.dumps([__version__, source_digests(sources), bad, keys], default=repr)
    return Dataset.from_generator(
        # Tuples: `datasets` would try to shard lists in gen_kwargs across processes.
        _good_json_records, gen_kwargs={"sources": tuple(specs), "bad": tuple(bad),
                                        "keys": tuple(keys)},
        fingerprint=hashlib.sha256(material.encode()).hexdigest())


def load_checked(dataset_cfg, split: str | None, map_fn: Callable | None, skip: bool,
                 tally: Tally | None = None
                 ) -> tuple[Any, Callable[[int], Loc | str], int | None]:
    """Check every raw record of ``dataset_cfg``, then load it (without the bad records when
    ``skip``).

    Each record gets the verdict ``xtuner check-custom-dataset`` gives it: its errors stop
    the run (or, with ``skip``, drop it), its warnings are logged.

    Args:
        dataset_cfg: ``process_hf_dataset``'s ``dataset`` (a config dict or a dataset).
        split: the split to use.
        map_fn: the resolved ``dataset_map_fn``; the format it declares is checked.
        skip: leave bad records out (logged with counts) instead of raising.
        tally: where skipped records are counted and warnings kept.

    Returns:
        ``(dataset, locate, read)``: ``locate(row)`` tells where a row of ``dataset`` came
        from; ``read`` is the number of raw records read (None for data that is not local
        files).

    Raises:
        DataError: bad records and ``skip`` off, no good record at all, or parquet files
            whose columns do not fit the format.
    """
    from .huggingface import build_origin_dataset

    sources, _ = local_sources(dataset_cfg, split)
    if not sources:
        return build_origin_dataset(dataset_cfg, split), row_of_dataset, None
    fmt = declared_format(map_fn)
    whole_file = _parquet_problems(sources, fmt)
    if whole_file:
        raise DataError("the parquet data does not fit the "
                        f"{'dataset_map_fn' if map_fn else 'conversation format'}: "
                        + "; ".join(whole_file) + "; fix the files or set the dataset_map_fn "
                        "that reads their columns (`xtuner list-dataset-format`)")
    scan = _scan(sources, fmt)
    tally = Tally() if tally is None else tally
    _raise_or_log(scan.bad, skip, tally=tally)
    log_warnings(scan.warnings, tally)
    if scan.locator.total == 0:
        paths = list(dict.fromkeys(s.path for s in sources))
        raise no_usable_sample(scan.read, ", ".join(paths), tally.dropped)
    if not scan.bad:
        dataset = build_origin_dataset(dataset_cfg, split)
    elif all(s.kind in ("json", "jsonl") for s in sources):
        dataset = _json_without_bad(sources, scan)
    else:
        dataset = build_origin_dataset(dataset_cfg, split)
        drop = set(scan.bad_rows)
        dataset = dataset.select([i for i in range(len(dataset)) if i not in drop])
    if len(dataset) != scan.locator.total:
        # `datasets` read the files differently from us (another file order, say): a row
        # number is then all that can be said truthfully.
        return dataset, row_of_dataset, scan.read
    return dataset, scan.locator, scan.read


def check_raw_records(dataset_cfg, split, map_fn, skip: bool):
    """The dataset :func:`load_checked` loads (kept for callers of the earlier API)."""
    return load_checked(dataset_cfg, split, map_fn, skip)[0]


# --------------------------------------------------------------------------- LLaVA records


def llava_image_problems(record: dict, image_folder: str, placeholders: int | None,
                         open_images: bool) -> list[Problem]:
    """The image verdict of one LLaVA record: its files (:func:`check_images`), then, when
    the record's ``<image>`` placeholders are known, whether they match its images."""
    from .record_checks import check_image_count, check_images, record_images

    problems = check_images(record, image_folder, open_images=open_images)
    if placeholders is not None and not any(p.severity == ERROR for p in problems):
        problems += check_image_count(placeholders, len(record_images(record)))
    return problems


def load_llava_checked(data_path: str, image_folder: str, map_fn: Callable | None,
                       skip: bool, tally: Tally | None = None) -> list[dict]:
    """The records of a LLaVA ``.json``/``.jsonl`` file, each checked when the dataset is
    built: the raw record (:class:`RecordScan`, as for text data) and its image files
    (existence only: fast on a million records). A sample with more ``<image>`` placeholders
    than images still stops training when it is read (``xtuner check-custom-dataset`` reports
    it up front).

    A bad record stops the run with the ``file:line`` line ``xtuner check-custom-dataset``
    prints for it, or with ``skip`` is dropped and counted; warnings are logged.

    Raises:
        DataError: bad records and ``skip`` off, or no good record at all.
    """
    from .sources import data_file_source

    source = data_file_source(str(data_path), "data_path of LLaVADataset", config_key=False)
    scan = RecordScan(declared_format(map_fn), loose_keys=("id", "image"))
    items = []
    for loc, tag, payload in iter_source(source):
        record, _, kept = scan.add(source, loc, tag, payload)
        if kept:
            items.append((loc, record))
    bad = list(scan.bad)
    warnings = list(scan.warnings)
    records = []
    for loc, record in items:
        problems = llava_image_problems(record, image_folder, None, open_images=False)
        error = next((p for p in problems if p.severity == ERROR), None)
        if error is not None:
            bad.append((loc, error))
        else:
            records.append(record)
    # In file order, as the checker lists them.
    bad.sort(key=lambda item: (item[0].line or 0, item[0].record or 0))
    tally = Tally() if tally is None else tally
    _raise_or_log(bad, skip, total=scan.read, tally=tally)
    log_warnings(warnings, tally)
    if not records:
        raise no_usable_sample(scan.read, str(data_path), tally.dropped)
    return records
