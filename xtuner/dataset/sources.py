"""Where training records come from: the local files a dataset config reads, read record by
record with the position of each (:class:`Loc`: ``file:line``, ``file:line (record N)`` or
``file:row N``).

Records are read straight from the files (JSON Lines line by line, a JSON list record by
record, parquet and ``save_to_disk`` folders row by row), so a problem names its place in the
file instead of surfacing later as an Arrow cast error from ``datasets``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

from xtuner.engine.config import resolve_type
from xtuner.utils.errors import ConfigError, DataError, XTunerError

from .problems import INVALID_JSON, MISSING_KEY, Problem

__all__ = ["Loc", "DataSource", "iter_source", "parse_payload", "resolve_sources",
           "local_sources", "callable_name", "data_file_source"]

_error = Problem.error


@dataclass(frozen=True)
class Loc:
    """The place of a record in its file, printed as the error lines show it.

    Attributes:
        path: the file or ``save_to_disk`` folder.
        line: the 1-based line the record starts on (JSON, JSON Lines).
        record: the index in a JSON list.
        row: the row of a parquet file or ``save_to_disk`` folder.
        split: the split of a ``save_to_disk`` ``DatasetDict``.
    """

    path: str
    line: int | None = None
    record: int | None = None
    row: int | None = None
    split: str | None = None

    def __str__(self) -> str:
        if self.row is not None:
            return f"{self.path}{f'[{self.split}]' if self.split else ''}:row {self.row}"
        text = self.path if self.line is None else f"{self.path}:{self.line}"
        return text if self.record is None else f"{text} (record {self.record})"


def parse_payload(tag: str, payload: Any) -> tuple[Any, Problem | None]:
    """``(record, None)`` or ``(None, problem)`` for one ``(tag, payload)`` of
    :func:`iter_source`: JSON lines are decoded here, so worker processes can share the work."""
    if tag == "obj":
        return payload, None
    if tag == "error":
        return None, payload
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, _error(INVALID_JSON, f"not UTF-8 text (byte {exc.start + 1} of the line)")
    try:
        return json.loads(text.rstrip("\r\n")), None
    except json.JSONDecodeError as exc:
        return None, _error(INVALID_JSON, f"{exc.msg} at column {exc.colno}")



@dataclass(frozen=True)
class DataSource:
    """One local file or ``save_to_disk`` folder to read.

    Attributes:
        path: the file or folder.
        kind: ``jsonl``, ``json``, ``parquet`` or ``arrow`` (a ``save_to_disk`` folder).
        split: the split to read from an ``arrow`` folder holding a ``DatasetDict``.
        field: the key holding the record list in a JSON object (``load_dataset(field=...)``).
    """

    path: str
    kind: str
    split: str | None = None
    field: str | None = None

    def size(self) -> int:
        p = Path(self.path)
        if p.is_file():
            return p.stat().st_size
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _iter_json_list(path: str, text: str, start: int) -> Iterator[tuple[Loc, str, Any]]:
    """Records of a JSON list with the line each starts on; stops at the first syntax error."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, start + 1)
    line, counted = 1 + text.count("\n", 0, pos), pos
    if pos < len(text) and text[pos] == "]":
        return
    index = 0
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield (Loc(path, exc.lineno, index), "error",
                   _error(INVALID_JSON, f"{exc.msg} at column {exc.colno}; the rest of the "
                                        "file cannot be read"))
            return
        yield Loc(path, line, index), "obj", obj
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            index += 1
            continue
        if pos < len(text) and text[pos] == "]":
            return
        at = 1 + text.count("\n", 0, pos)
        found = repr(text[pos]) if pos < len(text) else "the end of the file"
        yield (Loc(path, at, index + 1), "error",
               _error(INVALID_JSON, f"expected ',' or ']' after record {index}, found {found}; "
                                    "the rest of the file cannot be read"))
        return


def _iter_lines(path: str) -> Iterator[tuple[Loc, str, Any]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                yield Loc(path, lineno), "raw", raw


def _iter_json(source: DataSource) -> Iterator[tuple[Loc, str, Any]]:
    """A ``.json`` file: a list of records, one object holding one, or JSON Lines."""
    path = source.path
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        yield Loc(path), "error", _error(INVALID_JSON, f"not UTF-8 text (byte {exc.start})")
        return
    start = _skip_ws(text, 0)
    if start == len(text):
        return
    if text[start] == "[":
        yield from _iter_json_list(path, text, start)
        return
    first_line = text[start:].split("\n", 1)[0]
    try:
        json.loads(first_line)
        one_per_line = True
    except json.JSONDecodeError:
        one_per_line = False
    if one_per_line and source.field is None:
        yield from _iter_lines(path)  # JSON Lines in a .json file, which datasets accepts
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Loc(path, exc.lineno), "error", _error(INVALID_JSON, f"{exc.msg} at column "
                                                                    f"{exc.colno}")
        return
    if source.field is not None:
        if not isinstance(obj, dict) or source.field not in obj:
            yield Loc(path), "error", _error(MISSING_KEY, f"the file has no top-level "
                                                     f"'{source.field}' (load_dataset field=)")
            return
        obj = obj[source.field]
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield Loc(path, record=i), "obj", item
    else:
        yield Loc(path, 1 + text.count(chr(10), 0, start)), "obj", obj


def _iter_parquet(source: DataSource) -> Iterator[tuple[Loc, str, Any]]:
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(source.path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield Loc(source.path, row=row), "obj", record
            row += 1


def _iter_arrow(source: DataSource) -> Iterator[tuple[Loc, str, Any]]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(source.path)
    if isinstance(data, DatasetDict):
        splits = list(data) if source.split is None else [source.split]
        for name in splits:
            if name not in data:
                raise DataError(f"{source.path} has no split '{name}' (it has: "
                                f"{', '.join(data)})")
        parts = [(name, data[name]) for name in splits]
    else:
        parts = [(None, data)]
    for name, part in parts:
        row = 0
        # Batches of Arrow rows: indexing a Dataset row by row costs ~50 us a record.
        for batch in part.data.to_batches(max_chunksize=1024):
            for record in batch.to_pylist():
                yield Loc(source.path, row=row, split=name), "obj", record
                row += 1


def iter_source(source: DataSource) -> Iterator[tuple[Loc, str, Any]]:
    """``(location, tag, payload)`` per record, in the order ``datasets`` loads them.

    ``tag`` is ``raw`` (bytes of a JSON line, see :func:`parse_payload`), ``obj`` (a parsed
    record) or ``error`` (a :class:`Problem`: the record cannot be read).
    """
    if source.kind == "jsonl":
        return _iter_lines(source.path)
    if source.kind == "json":
        return _iter_json(source)
    if source.kind == "parquet":
        return _iter_parquet(source)
    return _iter_arrow(source)



def callable_name(obj) -> str:
    """``obj.__name__``, or ``str(obj)`` for objects without one."""
    return getattr(obj, "__name__", None) or str(obj)


_BUILDERS = ("json", "parquet", "csv", "text", "arrow", "pandas", "imagefolder")
_KINDS = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def _kind_of(path: str) -> str:
    kind = _KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise DataError(f"cannot check {path}: only JSON (.json), JSON Lines (.jsonl), parquet "
                        "and save_to_disk folders are supported")
    return kind


def _files(data_files, split: str | None, where: str) -> list[str]:
    if isinstance(data_files, dict):
        if split is None:
            chosen = list(data_files.values())
        elif split in data_files:
            chosen = [data_files[split]]
        else:
            raise ConfigError(f"{where}.data_files has no split '{split}' (it has: "
                              f"{', '.join(data_files)})")
    else:
        chosen = [data_files]
    flat: list[str] = []
    for item in chosen:
        flat += [str(p) for p in item] if isinstance(item, (list, tuple)) else [str(item)]
    return flat


def _expand(pattern: str, where: str) -> list[str]:
    if any(c in pattern for c in "*?["):
        found = sorted(glob(pattern, recursive=True))
        if not found:
            raise DataError(f"no file matches {pattern!r} ({where}.data_files)")
        return found
    if not os.path.exists(pattern):
        raise DataError(f"data file {pattern!r} does not exist ({where}.data_files); point "
                        "data_path in the config at your file, or override it with "
                        f"--cfg-options {where}.data_files.train=PATH")
    return [pattern]


def data_file_source(path: str, where: str, kind: str | None = None,
                     config_key: bool = True) -> DataSource:
    """One local data file named by a config at ``where``, read as ``kind`` (default: by its
    suffix). ``config_key``: ``where`` is a key ``--cfg-options`` can set (the hint names it).

    Raises:
        DataError: the file does not exist, or its suffix is not a readable kind.
    """
    if not os.path.isfile(path):
        fix = f"--cfg-options {where}=PATH" if config_key else "--cfg-options"
        raise DataError(f"data file {path!r} does not exist ({where}); point the config at "
                        f"your file, or override it with {fix}")
    return DataSource(path, kind or _kind_of(path))


def resolve_sources(dataset_cfg, split: str | None, where: str) -> list[DataSource]:
    """The local files a ``process_hf_dataset(dataset=...)`` config reads.

    Understands ``dict(type=load_dataset, path='json'|'parquet', data_files=...)``,
    ``load_dataset(path=<local file or folder>)`` and ``dict(type=load_from_disk, ...)``.

    Raises:
        DataError: the data is not local (a hub name) or a file is missing.
    """
    if not isinstance(dataset_cfg, dict) or "type" not in dataset_cfg:
        raise ConfigError(f"{where} is {type(dataset_cfg).__name__}; check-custom-dataset "
                          "needs a config dict such as dict(type=load_dataset, path='json', "
                          "data_files=...)")
    fn_name = callable_name(resolve_type(dataset_cfg["type"]))
    if fn_name == "load_from_disk":
        path = dataset_cfg.get("dataset_path") or dataset_cfg.get("path")
        if not path or not os.path.isdir(path):
            raise DataError(f"{where}: save_to_disk folder {path!r} does not exist")
        return [DataSource(str(path), "arrow", split=split)]
    if fn_name != "load_dataset":
        raise ConfigError(f"{where} is built by {fn_name}; check-custom-dataset reads "
                          "load_dataset(...) and load_from_disk(...) datasets")
    path = dataset_cfg.get("path")
    data_files = dataset_cfg.get("data_files")
    data_dir = dataset_cfg.get("data_dir")
    field_name = dataset_cfg.get("field")
    if path in _BUILDERS:
        if path not in ("json", "parquet"):
            raise DataError(f"{where}: load_dataset('{path}') data cannot be checked; only "
                            "'json' and 'parquet' are supported")
        if data_files is None:
            if not data_dir or not os.path.isdir(data_dir):
                raise ConfigError(f"{where}: load_dataset('{path}') needs data_files or an "
                                  "existing data_dir")
            data_files = [str(p) for p in sorted(Path(data_dir).rglob("*"))
                          if p.suffix.lower() in _KINDS]
        files = [f for pattern in _files(data_files, split, where)
                 for f in _expand(pattern, where)]
    elif path is not None and os.path.exists(str(path)):
        path = str(path)
        if os.path.isfile(path):
            files = [path]
        elif data_files is not None:
            files = [f for pattern in _files(data_files, split, where)
                     for f in _expand(os.path.join(path, pattern), where)]
        else:
            files = [str(p) for p in sorted(Path(path).rglob("*"))
                     if p.suffix.lower() in _KINDS and not p.name.startswith(".")
                     and p.name not in ("dataset_info.json", "state.json",
                                        "dataset_dict.json")]
            if not files and (Path(path) / "dataset_info.json").exists():
                return [DataSource(path, "arrow", split=split)]
            if not files:
                raise DataError(f"{where}: no JSON, JSON Lines or parquet file in {path}")
    else:
        raise DataError(f"{where}: {path!r} is not a local file or folder; "
                        "check-custom-dataset checks local data only (JSON, JSON Lines, "
                        "parquet or a save_to_disk folder). Download it first, e.g. "
                        f"`huggingface-cli download --repo-type dataset {path} --local-dir "
                        "DIR`, and point the config at the files")
    return [DataSource(f, _kind_of(f), field=field_name) for f in files]


def local_sources(dataset_cfg, split):
    """The local files (or ``save_to_disk`` folders) a dataset config reads.

    Returns:
        ``(sources, None)``, or ``(None, reason)`` when the data is not local files.
    """
    if not isinstance(dataset_cfg, dict) or "type" not in dataset_cfg:
        return None, f"the dataset is a {type(dataset_cfg).__name__} object, not local files"
    try:
        return resolve_sources(dataset_cfg, split, "dataset"), None
    except XTunerError as exc:
        return None, str(exc)
