"""Check the raw training data a config describes, record by record (``check-custom-dataset``).

Records are read straight from the files (JSON Lines line by line, a JSON list record by
record, parquet and ``save_to_disk`` folders row by row), so every problem names
``file:line`` (or ``file:row N``) instead of surfacing later as an Arrow cast error from
``datasets``. Each record is

1. checked against the format its config's ``dataset_map_fn`` expects (:mod:`.formats`):
   missing or misspelled keys, wrong JSON types, empty conversations, roles out of order;
2. run through the real pipeline pieces (the map fn, ``template_map_fn``, :func:`encode_fn`),
   with any failure attributed to the record;
3. measured: token length, trained tokens, whether ``max_length`` truncates it.

Tokenization runs in worker processes for large inputs. The result is a
:class:`DatasetReport` per dataset (a ``ConcatDataset`` gives one per member).
"""
from __future__ import annotations

import difflib
import inspect
import json
import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from xtuner.engine.config import resolve_type
from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import ConfigError, DataError

from .formats import CONVERSATION, MESSAGES, SHAREGPT, DataFormat, format_for_map_fn, guess_formats

__all__ = [
    "Problem",
    "DataSource",
    "DatasetSpec",
    "DatasetReport",
    "dataset_specs",
    "check_dataset",
    "check_config",
    "format_report",
    "validate_record",
    "INVALID_JSON", "MISSING_KEY", "UNKNOWN_KEY", "WRONG_TYPE", "EMPTY", "ROLE_ORDER",
    "UNKNOWN_ROLE", "NO_TRAINABLE", "TRUNCATED", "MAP_FN", "TEMPLATE", "TOKENIZE",
]

# Problem kinds; a report counts and limits the printed problems per kind.
INVALID_JSON = "invalid JSON"
MISSING_KEY = "missing key"
UNKNOWN_KEY = "unknown key"
WRONG_TYPE = "wrong type"
EMPTY = "empty conversation"
ROLE_ORDER = "roles out of order"
UNKNOWN_ROLE = "unknown role"
NO_TRAINABLE = "no trainable token"
TRUNCATED = "truncated"
MAP_FN = "map fn does not fit the data"
TEMPLATE = "template error"
TOKENIZE = "tokenize error"

ERROR, WARNING = "error", "warning"

# Below this much data one process is faster than starting workers.
_POOL_MIN_BYTES = 2 << 20
_CHUNK = 512


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a record."""

    severity: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.kind}: {self.detail}"


def _error(kind: str, detail: str) -> Problem:
    return Problem(ERROR, kind, detail)


def _warning(kind: str, detail: str) -> Problem:
    return Problem(WARNING, kind, detail)


# --------------------------------------------------------------------------- record checks


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _got(value: Any) -> str:
    """``a number (42)``: the JSON type of ``value`` and a short rendering of it."""
    kind = _json_type(value)
    if value is None:
        return kind
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} ({text})"


_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object", bool: "true or false"}


def _typo(missing: str, keys, known=()) -> str | None:
    """A key of ``keys`` (not itself expected) that looks like a misspelling of ``missing``."""
    candidates = [k for k in keys if isinstance(k, str) and k not in known and k != missing]
    matches = difflib.get_close_matches(missing, candidates, n=1, cutoff=0.7)
    return matches[0] if matches else None


def _missing(where: str, key: str, obj: dict, known=()) -> Problem:
    prefix = f"{where}: " if where else ""
    typo = _typo(key, obj, known)
    if typo is not None:
        return _error(MISSING_KEY, f"{prefix}'{key}' (found '{typo}': rename it to '{key}')")
    have = ", ".join(repr(k) for k in obj) or "no keys"
    return _error(MISSING_KEY, f"{prefix}'{key}' (the {'item' if where else 'record'} has "
                               f"{have})")


def _unknown_keys(where: str, obj: dict, known: tuple[str, ...],
                  required: tuple[str, ...]) -> list[Problem]:
    """Warn about keys that are ignored but look like a misspelled optional key.

    A misspelled required key is already reported by :func:`_missing`.
    """
    out = []
    for key in obj:
        if key in known or not isinstance(key, str):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        if close and close[0] not in obj and close[0] not in required:
            out.append(_warning(UNKNOWN_KEY, f"{where}: '{key}' is ignored (did you mean "
                                             f"'{close[0]}'?)"))
    return out


_TURN_KEYS = ("system", "input", "output", "output_with_loss", "need_eos_token", "sep")


def _check_turns(turns: list, where: str = "conversation") -> list[Problem]:
    if not turns:
        return [_error(EMPTY, f"'{where}' is an empty list")]
    problems: list[Problem] = []
    for i, turn in enumerate(turns):
        at = f"{where}[{i}]"
        if not isinstance(turn, dict):
            problems.append(_error(WRONG_TYPE, f"{at} must be an object with 'input' and "
                                               f"'output', got {_got(turn)}"))
            continue
        for key in ("input", "output"):
            if key not in turn:
                problems.append(_missing(at, key, turn, _TURN_KEYS))
            elif not isinstance(turn[key], str):
                problems.append(_error(WRONG_TYPE, f"{at}.{key} must be a string, got "
                                                   f"{_got(turn[key])}"))
        if turn.get("system") is not None and not isinstance(turn["system"], str):
            problems.append(_error(WRONG_TYPE, f"{at}.system must be a string, got "
                                               f"{_got(turn['system'])}"))
        for key in ("output_with_loss", "need_eos_token"):
            if key in turn and turn[key] is not None and not isinstance(turn[key], bool):
                problems.append(_error(WRONG_TYPE, f"{at}.{key} must be true or false, got "
                                                   f"{_got(turn[key])}"))
        if turn.get("sep") is not None and not isinstance(turn["sep"], str):
            problems.append(_error(WRONG_TYPE, f"{at}.sep must be a string, got "
                                               f"{_got(turn['sep'])}"))
        problems += _unknown_keys(at, turn, _TURN_KEYS, ("input", "output"))
    return problems


_MESSAGE_KEYS = ("role", "content", "loss")
_ROLES = ("system", "user", "assistant")


def _check_dialogue(items: list, where: str, role_key: str, text_key: str,
                    roles: tuple[str, ...], known: tuple[str, ...]) -> list[Problem]:
    """Shared checks of OpenAI ``messages`` and ShareGPT ``conversations``.

    ``roles`` is ``(system..., asker, answerer)``: the last two take turns.
    """
    if not items:
        return [_error(EMPTY, f"'{where}' is an empty list")]
    asker, answerer = roles[-2], roles[-1]
    problems: list[Problem] = []
    sequence: list[tuple[int, str]] = []
    for i, msg in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(msg, dict):
            problems.append(_error(WRONG_TYPE, f"{at} must be an object with '{role_key}' and "
                                               f"'{text_key}', got {_got(msg)}"))
            continue
        role = msg.get(role_key)
        if role_key not in msg:
            problems.append(_missing(at, role_key, msg, known))
        elif role not in roles:
            shown = repr(role) if isinstance(role, str) else _got(role)
            problems.append(_error(UNKNOWN_ROLE, f"{at}.{role_key} is {shown}; expected "
                                                 + ", ".join(repr(r) for r in roles)))
        else:
            sequence.append((i, role))
        if text_key not in msg:
            problems.append(_missing(at, text_key, msg, known))
        elif not isinstance(msg[text_key], str):
            problems.append(_error(WRONG_TYPE, f"{at}.{text_key} must be a string, got "
                                               f"{_got(msg[text_key])}"))
        if role_key == "role" and msg.get("loss") is not None:
            loss = msg["loss"]
            if not isinstance(loss, bool):
                problems.append(_error(WRONG_TYPE, f"{at}.loss must be true or false, got "
                                                   f"{_got(loss)}"))
            elif role != "assistant":
                problems.append(_warning(UNKNOWN_KEY, f"{at}.loss is ignored: only assistant "
                                                      "messages are trained"))
        problems += _unknown_keys(at, msg, known, (role_key, text_key))
    if any(p.severity == ERROR for p in problems):
        return problems

    turns = [(i, r) for i, r in sequence if r in (asker, answerer)]
    if not any(r == answerer for _, r in turns):
        return problems + [_error(EMPTY, f"no '{answerer}' message in '{where}': nothing to "
                                         "train on")]
    previous: tuple[int, str] | None = None
    for i, role in turns:
        if role == answerer and previous is None:
            problems.append(_error(ROLE_ORDER, f"{where}[{i}] is '{answerer}' before any "
                                               f"'{asker}' message (it would be skipped)"))
        elif role == answerer and previous[1] == answerer:
            problems.append(_error(ROLE_ORDER, f"{where}[{i}] is '{answerer}' right after "
                                               f"'{answerer}' {where}[{previous[0]}] with no "
                                               f"'{asker}' message between"))
        elif role == asker and previous is not None and previous[1] == asker:
            problems.append(_warning(ROLE_ORDER, f"{where}[{i}] is '{asker}' right after "
                                                 f"'{asker}' {where}[{previous[0]}]: the two "
                                                 "are joined with no separator"))
        previous = (i, role)
    if previous is not None and previous[1] == asker:
        problems.append(_warning(ROLE_ORDER, f"{where}[{previous[0]}] '{asker}' at the end has "
                                             "no answer and is dropped"))
    return problems


def _structure(record: Any, fmt: DataFormat) -> list[Problem]:
    """Problems of ``record`` as a record of ``fmt``, before any map fn runs."""
    if not isinstance(record, dict):
        return [_error(WRONG_TYPE, f"a record must be a JSON object, got {_got(record)}")]
    problems: list[Problem] = []
    for key, expected in fmt.fields.items():
        if key not in record:
            problems.append(_missing("", key, record, tuple(fmt.fields)))
        elif expected is not None and not isinstance(record[key], expected):
            problems.append(_error(WRONG_TYPE, f"'{key}' must be {_TYPE_NAMES[expected]}, got "
                                               f"{_got(record[key])}"))
    if problems:
        return problems
    if fmt.layout == CONVERSATION:
        problems += _check_turns(record["conversation"])
    elif fmt.layout == MESSAGES:
        problems += _check_dialogue(record["messages"], "messages", "role", "content", _ROLES,
                                    _MESSAGE_KEYS)
    elif fmt.layout == SHAREGPT:
        problems += _check_dialogue(record["conversations"], "conversations", "from", "value",
                                    fmt.speakers, ("from", "value"))
    return problems


def validate_record(record: Any, fmt: DataFormat) -> list[Problem]:
    """Check one raw record against the format its map fn expects.

    When required keys are missing but the record is a valid record of another common format,
    the single problem says which ``dataset_map_fn`` the data needs.
    """
    problems = _structure(record, fmt)
    missing = [k for k in fmt.fields if isinstance(record, dict) and k not in record]
    if missing:
        for other in guess_formats(record):
            if other.name != fmt.name and not any(p.severity == ERROR
                                                  for p in _structure(record, other)):
                return [_error(MAP_FN, f"the record has no '{missing[0]}' but is a valid "
                                       f"'{other.name}' record: set "
                                       f"dataset_map_fn={other.map_fn}")]
    return problems


# --------------------------------------------------------------------------- pipeline run


@dataclass
class _Context:
    """What a worker needs to check records: the format and the real pipeline pieces."""

    fmt: DataFormat
    map_fn: Callable | None
    map_fn_name: str | None
    template_fn: Callable | None
    tokenizer: Any
    max_length: int | None
    input_ids_with_output: bool = True
    with_image_token: bool = False


def _check_map_fn_output(result: Any, name: str) -> list[Problem]:
    if not isinstance(result, dict) or not isinstance(result.get("conversation"), list):
        return [_error(MAP_FN, f"{name} returned {_got(result)}; expected "
                               "{'conversation': [...]}")]
    problems = []
    for i, turn in enumerate(result["conversation"]):
        if not isinstance(turn, dict):
            problems.append(_error(MAP_FN, f"{name} returned conversation[{i}] = {_got(turn)}; "
                                           "expected an object"))
            continue
        for key in ("system", "input", "output"):
            value = turn.get(key)
            if value is not None and not isinstance(value, str):
                problems.append(_error(MAP_FN, f"{name} returned conversation[{i}].{key} = "
                                               f"{_got(value)}; expected a string"))
    return problems


@dataclass
class _Outcome:
    problems: list[Problem]
    length: int | None = None  # full token length (before truncation) of a kept record
    trained: int = 0  # trained tokens after truncation
    input_ids: list[int] | None = None
    labels: list[int] | None = None


def _run_pipeline(record: dict, ctx: _Context) -> _Outcome:
    from .tokenize import encode_fn

    problems: list[Problem] = []
    example = record
    if ctx.map_fn is not None:
        try:
            example = ctx.map_fn(dict(record))
        # A map fn (possibly the user's) may raise anything on a record it does not expect;
        # the error is reported against that record, not hidden.
        except Exception as exc:  # noqa: BLE001
            return _Outcome([_error(MAP_FN, f"{ctx.map_fn_name} raised "
                                            f"{type(exc).__name__}: {exc}")])
        problems = _check_map_fn_output(example, ctx.map_fn_name)
        if problems:
            return _Outcome(problems)
        if not example["conversation"]:
            severity = WARNING if ctx.fmt.may_drop else ERROR
            return _Outcome([Problem(severity, EMPTY, f"{ctx.map_fn_name} returned an empty "
                                                      "conversation; the record is dropped")])
    if ctx.template_fn is not None:
        try:
            example = ctx.template_fn(example)
        except DataError as exc:
            return _Outcome([_error(TEMPLATE, str(exc))])
    try:
        encoded = encode_fn(example, ctx.tokenizer, max_length=None,
                            input_ids_with_output=ctx.input_ids_with_output,
                            with_image_token=ctx.with_image_token)
    except ValueError as exc:
        return _Outcome([_error(TOKENIZE, str(exc))])
    input_ids, labels = encoded["input_ids"], encoded["labels"]
    length = len(input_ids)
    trained_all = sum(1 for label in labels if label != IGNORE_INDEX)
    limit = ctx.max_length if ctx.max_length is not None else length
    trained = sum(1 for label in labels[:limit] if label != IGNORE_INDEX)
    if ctx.input_ids_with_output:
        if trained_all == 0:
            return _Outcome([_error(NO_TRAINABLE, "every output is empty or has loss=false, "
                                                  "so the sample is dropped")])
        if trained == 0:
            return _Outcome([_error(NO_TRAINABLE, f"the sample has {length} tokens and all "
                                                  f"{trained_all} trained ones lie beyond "
                                                  f"max_length={ctx.max_length}")])
    if length > limit:
        problems.append(_warning(TRUNCATED, f"{length} tokens; max_length={limit} cuts the "
                                            f"last {length - limit} ({trained_all - trained} "
                                            "trained)"))
    return _Outcome(problems, length, trained, input_ids[:limit], labels[:limit])


def _parse(tag: str, payload: Any) -> tuple[Any, Problem | None]:
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


@dataclass
class _ChunkResult:
    read: int = 0
    lengths: list[int] = field(default_factory=list)
    trained: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)  # (severity, kind) -> problems
    shown: list[tuple[int, str, Problem]] = field(default_factory=list)
    sample: tuple[str, list[int], list[int]] | None = None


def _check_chunk(items: list[tuple[int, str, str, Any]], ctx: _Context,
                 max_shown: int) -> _ChunkResult:
    out = _ChunkResult()
    per_kind: Counter = Counter()
    for seq, loc, tag, payload in items:
        out.read += 1
        record, problem = _parse(tag, payload)
        problems = [problem] if problem else validate_record(record, ctx.fmt)
        outcome = None
        if not any(p.severity == ERROR for p in problems):
            outcome = _run_pipeline(record, ctx)
            problems = problems + outcome.problems
        for p in problems:
            out.counts[(p.severity, p.kind)] += 1
            if per_kind[p.kind] < max_shown:
                per_kind[p.kind] += 1
                out.shown.append((seq, loc, p))
        if outcome is None or outcome.length is None:
            first = next((p for p in problems if p.severity == ERROR), None)
            out.dropped[first.kind if first else EMPTY] += 1
            continue
        out.lengths.append(outcome.length)
        out.trained += outcome.trained
        if ctx.max_length is not None and outcome.length > ctx.max_length:
            out.truncated += 1
        if out.sample is None:
            out.sample = (loc, outcome.input_ids, outcome.labels)
    return out


_WORKER: dict[str, Any] = {}


def _init_worker(ctx: _Context, max_shown: int) -> None:
    # Pool initializer: the tokenizer is built once per worker, not shipped with every chunk.
    _WORKER["ctx"], _WORKER["max_shown"] = ctx, max_shown


def _check_chunk_in_worker(items):
    return _check_chunk(items, _WORKER["ctx"], _WORKER["max_shown"])


# --------------------------------------------------------------------------- reading files


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


def _iter_json_list(path: str, text: str, start: int) -> Iterator[tuple[str, str, Any]]:
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
            yield (f"{path}:{exc.lineno} (record {index})", "error",
                   _error(INVALID_JSON, f"{exc.msg} at column {exc.colno}; the rest of the "
                                        "file cannot be read"))
            return
        yield f"{path}:{line} (record {index})", "obj", obj
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            index += 1
            continue
        if pos < len(text) and text[pos] == "]":
            return
        at = 1 + text.count("\n", 0, pos)
        found = repr(text[pos]) if pos < len(text) else "the end of the file"
        yield (f"{path}:{at} (record {index + 1})", "error",
               _error(INVALID_JSON, f"expected ',' or ']' after record {index}, found {found}; "
                                    "the rest of the file cannot be read"))
        return


def _iter_lines(path: str) -> Iterator[tuple[str, str, Any]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                yield f"{path}:{lineno}", "raw", raw


def _iter_json(source: DataSource) -> Iterator[tuple[str, str, Any]]:
    """A ``.json`` file: a list of records, one object holding one, or JSON Lines."""
    path = source.path
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        yield f"{path}", "error", _error(INVALID_JSON, f"not UTF-8 text (byte {exc.start})")
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
        yield f"{path}:{exc.lineno}", "error", _error(INVALID_JSON, f"{exc.msg} at column "
                                                                    f"{exc.colno}")
        return
    if source.field is not None:
        if not isinstance(obj, dict) or source.field not in obj:
            yield path, "error", _error(MISSING_KEY, f"the file has no top-level "
                                                     f"'{source.field}' (load_dataset field=)")
            return
        obj = obj[source.field]
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield f"{path} (record {i})", "obj", item
    else:
        yield f"{path}:{1 + text.count(chr(10), 0, start)}", "obj", obj


def _iter_parquet(source: DataSource) -> Iterator[tuple[str, str, Any]]:
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(source.path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield f"{source.path}:row {row}", "obj", record
            row += 1


def _iter_arrow(source: DataSource) -> Iterator[tuple[str, str, Any]]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(source.path)
    if isinstance(data, DatasetDict):
        splits = list(data) if source.split is None else [source.split]
        for name in splits:
            if name not in data:
                raise DataError(f"{source.path} has no split '{name}' (it has: "
                                f"{', '.join(data)})")
            for row, record in enumerate(data[name]):
                yield f"{source.path}[{name}]:row {row}", "obj", record
        return
    for row, record in enumerate(data):
        yield f"{source.path}:row {row}", "obj", record


def iter_source(source: DataSource) -> Iterator[tuple[str, str, Any]]:
    """``(location, tag, payload)`` per record; ``tag`` is ``raw`` (bytes of a JSON line),
    ``obj`` (a parsed record) or ``error`` (a :class:`Problem`)."""
    if source.kind == "jsonl":
        return _iter_lines(source.path)
    if source.kind == "json":
        return _iter_json(source)
    if source.kind == "parquet":
        return _iter_parquet(source)
    return _iter_arrow(source)


# --------------------------------------------------------------------------- config -> specs


def _name(obj) -> str:
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
    fn_name = _name(resolve_type(dataset_cfg["type"]))
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


@dataclass
class DatasetSpec:
    """One ``process_hf_dataset`` of a config, as the checker needs it."""

    name: str
    sources: list[DataSource]
    map_fn: Callable | None
    template_fn: Callable | None
    template_name: str | None
    tokenizer: Any
    max_length: int | None
    pack: bool
    input_ids_with_output: bool
    with_image_token: bool
    max_dataset_length: int | None

    @property
    def fmt(self) -> DataFormat:
        return format_for_map_fn(self.map_fn)


def _template_name(template) -> str | None:
    from xtuner.utils.templates import PROMPT_TEMPLATE

    if isinstance(template, str):
        return template.rsplit(".", 1)[-1]
    for name, value in PROMPT_TEMPLATE.items():
        if value == template:
            return name
    return None


def _build_tokenizer(tokenizer_cfg, cache: dict):
    from .huggingface import build

    key = repr(tokenizer_cfg)
    if key not in cache:
        try:
            cache[key] = build(tokenizer_cfg)
        except (OSError, ValueError) as exc:
            name = (tokenizer_cfg.get("pretrained_model_name_or_path")
                    if isinstance(tokenizer_cfg, dict) else tokenizer_cfg)
            raise ConfigError(f"cannot load the tokenizer {name!r}: {exc}") from exc
    return cache[key]


def _spec(name: str, ds_cfg, tokenizers: dict) -> DatasetSpec:
    from .huggingface import build, process_hf_dataset, resolve_map_fn

    defaults = {k: p.default for k, p in inspect.signature(process_hf_dataset).parameters.items()
                if p.default is not inspect.Parameter.empty}
    args = {**defaults, **{k: v for k, v in ds_cfg.items() if k != "type"}}
    if not args["do_dataset_tokenization"]:
        raise ConfigError(f"{name} has do_dataset_tokenization=False (already tokenized); "
                          "check-custom-dataset checks raw records")
    if args["tokenizer"] is None:
        raise ConfigError(f"{name} has no tokenizer")
    sources = resolve_sources(args["dataset"], args["split"], f"{name}.dataset")
    template_cfg = args["template_map_fn"]
    template_name = None
    if isinstance(template_cfg, dict):
        template_name = _template_name(template_cfg.get("template"))
    template_fn = build(template_cfg) if template_cfg is not None else None
    return DatasetSpec(
        name=name, sources=sources, map_fn=resolve_map_fn(args["dataset_map_fn"]),
        template_fn=template_fn, template_name=template_name,
        tokenizer=_build_tokenizer(args["tokenizer"], tokenizers),
        max_length=args["max_length"], pack=bool(args["pack_to_max_length"]),
        input_ids_with_output=bool(args["input_ids_with_output"]),
        with_image_token=bool(args["with_image_token"]),
        max_dataset_length=args["max_dataset_length"])


def dataset_specs(cfg) -> tuple[list[DatasetSpec], list[str]]:
    """The training datasets of a config (each member of a ``ConcatDataset``), plus notes
    about members that cannot be checked.

    Raises:
        ConfigError: the config has no training dataset this checker understands.
    """
    if str(cfg.get("framework", "mmengine")).lower() == "huggingface":
        root, root_name = cfg.get("train_dataset"), "train_dataset"
    else:
        loader = cfg.get("train_dataloader")
        root = loader.get("dataset") if isinstance(loader, dict) else None
        root_name = "train_dataloader.dataset"
    if not isinstance(root, dict) or "type" not in root:
        raise ConfigError(f"the config has no {root_name} to check")
    members = [(root_name, root)]
    if _name(resolve_type(root["type"])) == "ConcatDataset":
        members = [(f"{root_name}.datasets[{i}]", d)
                   for i, d in enumerate(root.get("datasets") or [])]
    specs, notes, tokenizers = [], [], {}
    for name, ds_cfg in members:
        kind = _name(resolve_type(ds_cfg.get("type"))) if isinstance(ds_cfg, dict) else None
        if kind != "process_hf_dataset":
            notes.append(f"{name} ({kind or type(ds_cfg).__name__}) is not a "
                         "process_hf_dataset and is not checked")
            continue
        specs.append(_spec(name, ds_cfg, tokenizers))
    if not specs:
        raise ConfigError(f"{root_name} holds no process_hf_dataset dataset; "
                          "check-custom-dataset checks text datasets built by "
                          "process_hf_dataset")
    return specs, notes


# --------------------------------------------------------------------------- driver & report


@dataclass
class DatasetReport:
    """The outcome of checking one dataset."""

    spec: DatasetSpec
    read: int = 0
    lengths: list[int] = field(default_factory=list)
    trained: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)
    shown: list[tuple[int, str, Problem]] = field(default_factory=list)
    sample: tuple[str, list[int], list[int]] | None = None
    packed_rows: int | None = None

    @property
    def errors(self) -> int:
        return sum(n for (severity, _), n in self.counts.items() if severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(n for (severity, _), n in self.counts.items() if severity == WARNING)

    @property
    def kept(self) -> int:
        return len(self.lengths)

    def merge(self, chunk: _ChunkResult, max_shown: int) -> None:
        self.read += chunk.read
        self.lengths += chunk.lengths
        self.trained += chunk.trained
        self.truncated += chunk.truncated
        self.dropped.update(chunk.dropped)
        shown_per_kind = Counter(p.kind for _, _, p in self.shown)
        for seq, loc, p in chunk.shown:
            if shown_per_kind[p.kind] < max_shown:
                shown_per_kind[p.kind] += 1
                self.shown.append((seq, loc, p))
        self.counts.update(chunk.counts)
        if self.sample is None:
            self.sample = chunk.sample


def _chunks(spec: DatasetSpec, progress) -> Iterator[list[tuple[int, str, str, Any]]]:
    seq = 0
    chunk: list[tuple[int, str, str, Any]] = []
    for source in spec.sources:
        for loc, tag, payload in iter_source(source):
            chunk.append((seq, loc, tag, payload))
            seq += 1
            if len(chunk) == _CHUNK:
                yield chunk
                progress.update(len(chunk))
                chunk = []
    if chunk:
        yield chunk
        progress.update(len(chunk))


def check_dataset(spec: DatasetSpec, max_shown: int = 20, num_proc: int | None = None,
                  progress: bool | None = None) -> DatasetReport:
    """Read and check every record of one dataset.

    Args:
        spec: the dataset (see :func:`dataset_specs`).
        max_shown: problems kept for printing per kind; all are counted.
        num_proc: worker processes (default: CPU count, at most 16). Inputs under 2 MB are
            checked in this process.
        progress: show a progress bar (default: when stderr is a terminal).
    """
    from tqdm import tqdm

    ctx = _Context(fmt=spec.fmt, map_fn=spec.map_fn,
                   map_fn_name=_name(spec.map_fn) if spec.map_fn else None,
                   template_fn=spec.template_fn, tokenizer=spec.tokenizer,
                   max_length=spec.max_length, input_ids_with_output=spec.input_ids_with_output,
                   with_image_token=spec.with_image_token)
    report = DatasetReport(spec)
    num_proc = num_proc or min(os.cpu_count() or 1, 16)
    total_bytes = sum(s.size() for s in spec.sources)
    bar = tqdm(desc=f"Checking {spec.name}", unit=" records", file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    try:
        if num_proc <= 1 or total_bytes < _POOL_MIN_BYTES:
            for chunk in _chunks(spec, bar):
                report.merge(_check_chunk(chunk, ctx, max_shown), max_shown)
        else:
            _check_in_pool(spec, ctx, report, num_proc, max_shown, bar)
    finally:
        bar.close()
    report.shown.sort(key=lambda item: item[0])
    if spec.pack and spec.max_length and report.lengths:
        from .packing import plan_packed_rows

        rows = plan_packed_rows([min(n, spec.max_length) for n in report.lengths],
                                spec.max_length)
        report.packed_rows = len(rows)
    return report


def _check_in_pool(spec, ctx, report, num_proc, max_shown, bar) -> None:
    import multiprocessing as mp

    # Fast tokenizers disable their own threads after a fork anyway; saying so up front
    # avoids the warning in every worker.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    method = "fork" if "fork" in mp.get_all_start_methods() else None
    with mp.get_context(method).Pool(num_proc, _init_worker, (ctx, max_shown)) as pool:
        # A bounded window of chunks in flight keeps memory flat on a large file and the
        # results in file order.
        pending: deque = deque()
        for chunk in _chunks(spec, bar):
            pending.append(pool.apply_async(_check_chunk_in_worker, (chunk,)))
            if len(pending) >= 4 * num_proc:
                report.merge(pending.popleft().get(), max_shown)
        while pending:
            report.merge(pending.popleft().get(), max_shown)


def _percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile."""
    import math

    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _describe_format(spec: DatasetSpec) -> str:
    fmt = spec.fmt
    if spec.map_fn is None:
        return "XTuner conversation format (dataset_map_fn=None)"
    return f"'{fmt.name}' format (dataset_map_fn={_name(spec.map_fn)})"


def format_report(report: DatasetReport, max_shown: int = 20) -> str:
    """The problems, summary and a decoded sample of one dataset, as printed by the tool."""
    from .render import render_trained_spans

    spec = report.spec
    files = ", ".join(s.path for s in spec.sources)
    lines = [f"== {spec.name}: {files}",
             (f"   {_describe_format(spec)}, template {spec.template_name or 'none'}, "
              f"max_length {spec.max_length}")]
    if report.shown:
        lines.append("")
        lines += [f"{loc}: {p}" for _, loc, p in report.shown]
        by_kind = Counter()
        for (_, kind), n in report.counts.items():
            by_kind[kind] += n
        for kind, n in by_kind.items():
            if n > max_shown:
                lines.append(f"... and {n - max_shown} more '{kind}' problems")
    lines.append("")
    dropped = sum(report.dropped.values())
    reasons = ", ".join(f"{kind} {n}" for kind, n in report.dropped.most_common())
    lines += [
        "Summary",
        f"  records read     {report.read}",
        f"  kept             {report.kept}",
        f"  dropped          {dropped}" + (f" ({reasons})" if reasons else ""),
    ]
    if report.lengths:
        values = sorted(report.lengths)
        median = values[(len(values) - 1) // 2]
        lines.append(f"  token lengths    min {values[0]}, median {median}, "
                     f"p95 {_percentile(values, 95)}, max {values[-1]}")
        total = sum(min(n, spec.max_length or n) for n in values)
        lines.append(f"  trained tokens   {report.trained} of {total} "
                     f"({report.trained / max(total, 1):.1%})")
    if spec.max_length is not None:
        lines.append(f"  truncated        {report.truncated} (max_length {spec.max_length})")
    if report.packed_rows is not None:
        total = sum(min(n, spec.max_length) for n in report.lengths)
        efficiency = total / (report.packed_rows * spec.max_length)
        lines.append(f"  packed rows      {report.packed_rows} (packing efficiency "
                     f"{efficiency:.1%})")
    if spec.max_dataset_length is not None:
        lines.append(f"  note             max_dataset_length={spec.max_dataset_length}: "
                     "training uses a random subset of the kept records")
    if report.sample is not None:
        loc, ids, labels = report.sample
        lines += ["", f"Sample from {loc}, trained tokens between [[ and ]]:",
                  render_trained_spans(spec.tokenizer, ids, labels)]
    return "\n".join(lines)


def check_config(cfg, max_shown: int = 20, num_proc: int | None = None,
                 progress: bool | None = None, out=None) -> list[DatasetReport]:
    """Check every training dataset of ``cfg``, printing each report to ``out`` as it is done.

    Returns:
        The reports, one per dataset.
    """
    out = out or sys.stdout
    specs, notes = dataset_specs(cfg)
    for note in notes:
        print(f"note: {note}", file=out)
    reports = []
    for spec in specs:
        report = check_dataset(spec, max_shown=max_shown, num_proc=num_proc, progress=progress)
        if reports:
            print(file=out)
        print(format_report(report, max_shown), file=out, flush=True)
        reports.append(report)
    return reports
