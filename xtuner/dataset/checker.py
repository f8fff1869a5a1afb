"""Run every record of a dataset through the real pipeline pieces and measure it.

Each record is checked against its format (:mod:`.record_checks`), then run through the map
fn, ``template_map_fn`` and :func:`encode_fn`, with any failure attributed to the record, and
measured: token length, trained tokens, whether ``max_length`` truncates it. Large inputs are
checked by worker processes, a bounded window of chunks at a time. The outcome is a
:class:`DatasetReport`.
"""
from __future__ import annotations

import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from xtuner.utils.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

from .formats import DataFormat
from .problems import (
    BAD_MEDIA_RECORD,
    BAD_PAIR,
    DROPPING,
    EMPTY,
    ERROR,
    INVALID_JSON,
    MAP_FN,
    MEDIA_COUNT,
    MEDIA_FORMAT,
    MISSING_MEDIA,
    NO_TRAINABLE,
    SPECIAL_TOKENS,
    TEMPLATE,
    TOKENIZE,
    TOO_LONG,
    TRUNCATED,
    UNREADABLE_MEDIA,
    WARNING,
    WRONG_TYPE,
    Problem,
    describe_value,
)
from .raw_check import RecordScan, llava_image_problems
from .record_checks import (
    check_conversation,
    check_encoded,
    check_image_budget,
    check_image_count,
    missing_template_tokens,
    record_images,
    template_of,
    template_tokens_added,
    template_tokens_problem,
)
from .sources import callable_name, iter_source, parse_payload
from .specs import DatasetSpec

__all__ = ["DatasetReport", "check_dataset", "check_media_dataset", "check_preference_dataset"]

# Below this much data one process is faster than starting workers.
_POOL_MIN_BYTES = 2 << 20
_CHUNK = 512

_error, _warning = Problem.error, Problem.warning


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
    missing_tokens: dict[str, int] = field(default_factory=dict)
    keys: tuple[str, ...] = ()  # every top-level key of the JSON records
    image_folder: str | None = None  # LLaVA: image files are checked (and decoded) here
    image_tokens: int | None = None
    pack: bool = False


@dataclass
class _Outcome:
    problems: list[Problem]
    length: int | None = None  # full token length (before truncation) of a kept record
    trained: int = 0  # trained tokens after truncation
    input_ids: list[int] | None = None
    labels: list[int] | None = None
    template_added: int = 0  # tokens added by template markers the tokenizer lacks


def _run_pipeline(record: dict, ctx: _Context) -> _Outcome:
    """The map fn, template and tokenizer on one record, with the checks training makes at
    each step (:func:`check_conversation`, :func:`check_encoded`)."""
    from .tokenize import encode_fn

    problems: list[Problem] = []
    if ctx.image_folder is not None:
        # Missing or undecodable images first: training checks the files up front.
        problems = llava_image_problems(record, ctx.image_folder, None, open_images=True)
        if any(p.severity == ERROR for p in problems):
            return _Outcome(problems)
    example = record
    if ctx.map_fn is not None:
        try:
            # As `datasets` loads JSON: every row has every key of the file, None where a
            # record lacks it.
            example = ctx.map_fn({**dict.fromkeys(ctx.keys), **record})
        # A map fn (possibly the user's) may raise anything on a record it does not expect;
        # the error is reported against that record, not hidden.
        except Exception as exc:  # noqa: BLE001
            return _Outcome([_error(MAP_FN, f"{ctx.map_fn_name} raised "
                                            f"{type(exc).__name__}: {exc}")])
        checked = check_conversation(example, ctx.map_fn_name, ctx.fmt)
        if checked or not example["conversation"]:
            return _Outcome(problems + checked)
    if ctx.template_fn is not None:
        try:
            example = ctx.template_fn(example)
        # The same guard as training's template step (guarded_map.Step).
        except Exception as exc:  # noqa: BLE001
            return _Outcome([_error(TEMPLATE, f"template_map_fn raised "
                                              f"{type(exc).__name__}: {exc}")])
    try:
        encoded = encode_fn(example, ctx.tokenizer, max_length=None,
                            input_ids_with_output=ctx.input_ids_with_output,
                            with_image_token=ctx.with_image_token)
    # The same guard as training's tokenize step (guarded_map.Step).
    except Exception as exc:  # noqa: BLE001
        return _Outcome([_error(TOKENIZE, f"the tokenizer raised {type(exc).__name__}: "
                                          f"{exc}")])
    input_ids, labels = encoded["input_ids"], encoded["labels"]
    limit = ctx.max_length if ctx.max_length is not None else len(input_ids)
    if ctx.image_folder is not None:
        # As training counts them: the IMAGE_TOKEN_INDEX placeholders of the tokenized ids.
        placeholders = input_ids.count(IMAGE_TOKEN_INDEX)
        counted = check_image_count(placeholders, len(record_images(record)))
        problems = problems + counted
        if any(p.severity == ERROR for p in counted):
            return _Outcome(problems)
    checked = check_encoded(labels, ctx.max_length, ctx.input_ids_with_output)
    if any(p.kind in DROPPING for p in checked):
        return _Outcome(problems + checked)
    if ctx.image_folder is not None and ctx.image_tokens:
        kept_ids = input_ids[:limit]
        checked = checked + check_image_budget(len(kept_ids), kept_ids.count(IMAGE_TOKEN_INDEX),
                                               ctx.image_tokens, limit, ctx.pack)
        if any(p.severity == ERROR for p in checked):
            return _Outcome(problems + checked)
    trained = sum(1 for label in labels[:limit] if label != IGNORE_INDEX)
    added = template_tokens_added(example["conversation"], ctx.missing_tokens)
    return _Outcome(problems + checked, len(input_ids), trained, input_ids[:limit],
                    labels[:limit], added)


@dataclass
class _ChunkResult:
    read: int = 0
    lengths: list[int] = field(default_factory=list)
    trained: int = 0
    truncated: int = 0
    template_added: int = 0
    dropped: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)  # (severity, kind) -> problems
    shown: list[tuple[int, str, Problem]] = field(default_factory=list)
    sample: tuple[str, list[int], list[int]] | None = None


# One record as the main process hands it to a worker: (sequence number, location, the
# parsed record, its raw-record problems, whether the raw checks keep it).
_Item = tuple[int, str, Any, list[Problem], bool]


def _check_chunk(items: list[_Item], ctx: _Context, max_shown: int) -> _ChunkResult:
    out = _ChunkResult()
    per_kind: Counter = Counter()
    for seq, loc, record, problems, kept in items:
        out.read += 1
        outcome = None
        if kept:
            outcome = _run_pipeline(record, ctx)
            problems = problems + outcome.problems
        for p in problems:
            out.counts[(p.severity, p.kind)] += 1
            if per_kind[p.kind] < max_shown:
                per_kind[p.kind] += 1
                out.shown.append((seq, loc, p))
        if outcome is None or outcome.length is None:
            first = next((p for p in problems if p.severity == ERROR), None)
            if first is None:  # a warning that drops the record
                first = next((p for p in problems if p.kind in DROPPING), None)
            out.dropped[first.kind if first else EMPTY] += 1
            continue
        out.lengths.append(outcome.length)
        out.trained += outcome.trained
        out.template_added += outcome.template_added
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
    template_added: int = 0
    notes: list[Problem] = field(default_factory=list)  # problems of the whole dataset

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
        self.template_added += chunk.template_added
        self.dropped.update(chunk.dropped)
        shown_per_kind = Counter(p.kind for _, _, p in self.shown)
        for seq, loc, p in chunk.shown:
            if shown_per_kind[p.kind] < max_shown:
                shown_per_kind[p.kind] += 1
                self.shown.append((seq, loc, p))
        self.counts.update(chunk.counts)
        if self.sample is None:
            self.sample = chunk.sample


def _json_keys(spec: DatasetSpec) -> tuple[str, ...]:
    """The top-level keys of every JSON record of ``spec`` (a column each once loaded)."""
    keys: dict[str, None] = {}
    for source in spec.sources:
        if source.kind not in ("json", "jsonl"):
            continue
        for _, tag, payload in iter_source(source):
            record, _ = parse_payload(tag, payload)
            if isinstance(record, dict):
                keys.update(dict.fromkeys(record))
    return tuple(keys)


def _chunks(spec: DatasetSpec, fmt: DataFormat, progress) -> Iterator[list[_Item]]:
    """Every record read and given its raw-record verdict here, in order, by the same
    :class:`RecordScan` training uses (it also tracks JSON types across records); the
    pipeline then runs in the workers."""
    scan = RecordScan(fmt, loose_keys=spec.loose_keys)
    seq = 0
    chunk: list[_Item] = []
    for source in spec.sources:
        for loc, tag, payload in iter_source(source):
            record, problems, kept = scan.add(source, loc, tag, payload)
            scan.warnings.clear()  # the report shows them; the scan need not keep them
            chunk.append((seq, str(loc), record if kept else None, problems, kept))
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

    if spec.preference is not None:
        return check_preference_dataset(spec, max_shown)
    if spec.media is not None:
        return check_media_dataset(spec, max_shown)
    missing = missing_template_tokens(template_of(spec.template_fn), spec.tokenizer)
    ctx = _Context(fmt=spec.fmt, map_fn=spec.map_fn,
                   map_fn_name=callable_name(spec.map_fn) if spec.map_fn else None,
                   template_fn=spec.template_fn, tokenizer=spec.tokenizer,
                   max_length=spec.max_length, input_ids_with_output=spec.input_ids_with_output,
                   with_image_token=spec.with_image_token, missing_tokens=missing,
                   keys=_json_keys(spec) if spec.map_fn is not None else (),
                   image_folder=spec.image_folder, image_tokens=spec.image_tokens,
                   pack=spec.pack)
    report = DatasetReport(spec)
    num_proc = num_proc or min(os.cpu_count() or 1, 16)
    total_bytes = sum(s.size() for s in spec.sources)
    bar = tqdm(desc=f"Checking {spec.name}", unit=" records", file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    try:
        if num_proc <= 1 or total_bytes < _POOL_MIN_BYTES:
            for chunk in _chunks(spec, ctx.fmt, bar):
                report.merge(_check_chunk(chunk, ctx, max_shown), max_shown)
        else:
            _check_in_pool(spec, ctx, report, num_proc, max_shown, bar)
    finally:
        bar.close()
    report.shown.sort(key=lambda item: item[0])
    note = template_tokens_problem(spec.template_name, missing, report.template_added,
                                   report.kept)
    if note is not None:
        report.notes.append(note)
        report.counts[(note.severity, note.kind)] += 1
    if spec.pack and spec.max_length and report.lengths and spec.image_folder is None:
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
        for chunk in _chunks(spec, ctx.fmt, bar):
            pending.append(pool.apply_async(_check_chunk_in_worker, (chunk,)))
            if len(pending) >= 4 * num_proc:
                report.merge(pending.popleft().get(), max_shown)
        while pending:
            report.merge(pending.popleft().get(), max_shown)



# --------------------------------------------------------------------------- preference pairs


def _pair_problem(record: dict, where: str) -> Problem | None:
    """:func:`check_preference_record`'s verdict as a problem (its message without
    ``where``), so the checker prints the detail training raises."""
    from xtuner.utils.errors import DataError

    from .preference_dataset import check_preference_record

    try:
        check_preference_record(record, where)
    except DataError as exc:
        return _error(BAD_PAIR, str(exc).removeprefix(f"{where}: "))
    return None


def _check_pair(record: Any, loc: str, spec: DatasetSpec, keys: tuple[str, ...],
                max_length: int) -> tuple[list[Problem], dict | None, int]:
    """``(problems, tokenized pair or None, longest untruncated sequence)`` of one record,
    through the steps of ``build_preference_dataset``: the raw check of
    ``load_jsonl_dataset``, the map fn (its output merged into the record, as
    ``datasets.map`` does), the pair check and :func:`tokenize_pair`."""
    import sys as _sys

    from .preference_dataset import tokenize_pair

    settings = spec.preference
    if not isinstance(record, dict):
        return [_error(WRONG_TYPE, "a record must be a JSON object with prompt, chosen and "
                                   f"rejected, got {describe_value(record)}")], None, 0
    if settings["from_jsonl"]:
        problem = _pair_problem(record, loc)
        if problem is not None:
            return [problem], None, 0
    pair = record
    if spec.map_fn is not None:
        name = callable_name(spec.map_fn)
        try:
            pair = {**dict.fromkeys(keys), **record, **spec.map_fn({**dict.fromkeys(keys),
                                                                    **record})}
        # A map fn (possibly the user's) may raise anything on a record it does not expect;
        # the error is reported against that record, not hidden.
        except Exception as exc:  # noqa: BLE001
            return [_error(MAP_FN, f"{name} raised {type(exc).__name__}: {exc}")], None, 0
        problem = _pair_problem(pair, loc)
        if problem is not None:
            return [Problem(ERROR, MAP_FN, f"after {name}: {problem.detail}")], None, 0
    options = dict(is_reward=settings["is_reward"], reward_token_id=settings["reward_token_id"])
    try:
        pair = {k: pair[k] for k in ("prompt", "chosen", "rejected")}
        tokens = tokenize_pair(pair, spec.tokenizer, max_length, **options)
        full = tokenize_pair(pair, spec.tokenizer, _sys.maxsize, **options)
    # The tokenizer's chat template may reject a conversation (e.g. roles out of order).
    except Exception as exc:  # noqa: BLE001
        return [_error(TOKENIZE, f"the tokenizer raised {type(exc).__name__}: {exc}")], None, 0
    return [], tokens, max(len(full["chosen_ids"]), len(full["rejected_ids"]))


def check_preference_dataset(spec: DatasetSpec, max_shown: int = 20) -> DatasetReport:
    """Read and check every record of a ``build_preference_dataset`` dataset.

    Errors are what stops ``build_preference_dataset`` (a record that is not a pair of
    message lists, before or after the map fn; a map fn or chat template that raises);
    warnings are the pairs it drops (no response token within ``max_length``, a pair longer
    than ``max_packed_length`` when packing) and sequences ``max_length`` cuts.
    """
    settings = spec.preference
    max_length = spec.max_length
    packed_limit = settings["max_packed_length"] if spec.pack else None
    report = DatasetReport(spec)
    chunk = _ChunkResult()
    per_kind: Counter = Counter()
    keys = _json_keys(spec) if spec.map_fn is not None else ()
    for source in spec.sources:
        for loc, tag, payload in iter_source(source):
            where = str(loc)
            chunk.read += 1
            record, problem = parse_payload(tag, payload)
            if problem is not None:
                problems, tokens, longest = [problem], None, 0
            else:
                problems, tokens, longest = _check_pair(record, where, spec, keys, max_length)
            if tokens is not None:
                problems += _pair_warnings(tokens, longest, max_length, packed_limit)
            for p in problems:
                chunk.counts[(p.severity, p.kind)] += 1
                if per_kind[p.kind] < max_shown:
                    per_kind[p.kind] += 1
                    chunk.shown.append((chunk.read, where, p))
            dropping = next((p for p in problems
                             if p.severity == ERROR or p.kind in DROPPING), None)
            if dropping is not None:
                chunk.dropped[dropping.kind] += 1
                continue
            length = len(tokens["chosen_ids"]) + len(tokens["rejected_ids"])
            chunk.lengths.append(length)
            chunk.trained += sum(1 for side in ("chosen_labels", "rejected_labels")
                                 for label in tokens[side] if label != IGNORE_INDEX)
            chunk.truncated += longest > max_length
            if chunk.sample is None:
                chunk.sample = (where, tokens["chosen_ids"], tokens["chosen_labels"])
    report.merge(chunk, max_shown)
    if packed_limit is not None and report.lengths:
        from .packing import plan_packed_rows

        report.packed_rows = len(plan_packed_rows(report.lengths, packed_limit))
    return report


def _pair_warnings(tokens: dict, longest: int, max_length: int,
                   packed_limit: int | None) -> list[Problem]:
    """What ``build_preference_dataset`` drops (or cuts) from a well-formed pair."""
    for side in ("chosen", "rejected"):
        if all(label == IGNORE_INDEX for label in tokens[f"{side}_labels"]):
            return [_warning(NO_TRAINABLE, f"the {side} response has no token within "
                                           f"max_length={max_length}; the pair is dropped")]
    length = len(tokens["chosen_ids"]) + len(tokens["rejected_ids"])
    if packed_limit is not None and length > packed_limit:
        return [_warning(TOO_LONG, f"the pair has {length} tokens (chosen "
                                   f"{len(tokens['chosen_ids'])} + rejected "
                                   f"{len(tokens['rejected_ids'])}) > max_packed_length="
                                   f"{packed_limit}; the pair is dropped")]
    if longest > max_length:
        return [_warning(TRUNCATED, f"the longest sequence of the pair has {longest} tokens; "
                                    f"max_length={max_length} cuts it")]
    return []


# --------------------------------------------------------------------------- media records

# The kind of a media tokenize function's DataError, by its wording (first match wins).
_MEDIA_KINDS = (
    ("no such file", MISSING_MEDIA),
    ("cannot read a", MEDIA_FORMAT),
    ("needs the soundfile package", MEDIA_FORMAT),
    ("placeholder", MEDIA_COUNT),
    ("do not write the special tokens", SPECIAL_TOKENS),
    ("max_length", TOO_LONG),
    ("too short", UNREADABLE_MEDIA),
    ("not a readable", UNREADABLE_MEDIA),
    ("NaN", UNREADABLE_MEDIA),
    ("samples are not supported", UNREADABLE_MEDIA),
    ("not a row of numbers", UNREADABLE_MEDIA),
    ("columns, the first row", UNREADABLE_MEDIA),
    ("no numeric rows", UNREADABLE_MEDIA),
    ("expected a numeric array", UNREADABLE_MEDIA),
)


def _media_problem(message: str) -> Problem:
    """A media tokenize function's :class:`DataError` as a problem, its message unchanged
    (training raises it as ``file:line: <message>``)."""
    kind = next((k for text, k in _MEDIA_KINDS if text in message), BAD_MEDIA_RECORD)
    return _error(kind, message)


def _check_media_record(record: Any, tokenize_fn) -> tuple[list[Problem], dict | None, int]:
    """``(problems, sample or None, untruncated length)`` of one record: the tokenize
    function as ``MediaJsonlDataset`` calls it when it is built, then every media loaded as
    reading the sample does."""
    import copy

    from xtuner.utils.errors import DataError

    try:
        sample = tokenize_fn(record)
    except DataError as exc:
        return [_media_problem(str(exc))], None, 0
    # The chat template may reject a conversation (e.g. roles out of order): training stops.
    except Exception as exc:  # noqa: BLE001
        return [_error(TOKENIZE, f"the tokenize function raised {type(exc).__name__}: "
                                 f"{exc}")], None, 0
    try:
        for reference in sample["media"]:
            tokenize_fn.load(reference)
    except DataError as exc:
        return [_media_problem(str(exc))], None, 0
    length = sample["num_tokens"]
    if tokenize_fn.max_length is not None and length >= tokenize_fn.max_length:
        uncut = copy.copy(tokenize_fn)
        uncut.max_length = None
        length = uncut(record)["num_tokens"]
    return [], sample, length


def check_media_dataset(spec: DatasetSpec, max_shown: int = 20) -> DatasetReport:
    """Read and check every record of a ``MediaJsonlDataset``.

    Each line is read as the dataset reads it (a non-JSON line is its ``not JSON`` error),
    tokenized by its tokenize function (whose :class:`DataError` is the record's error, in
    the words training stops with) and its media are loaded; every bad record is reported,
    not only the first. Text cut by ``max_length`` after the last media span is a warning.
    """
    import json

    tokenize_fn = spec.media
    max_length = tokenize_fn.max_length
    report = DatasetReport(spec)
    chunk = _ChunkResult()
    per_kind: Counter = Counter()
    longest = 0
    for source in spec.sources:
        for loc, _, payload in iter_source(source):
            where = str(loc)
            chunk.read += 1
            sample, length = None, 0
            try:
                record = json.loads(payload.decode("utf-8"))
            except UnicodeDecodeError as exc:
                problems = [_error(INVALID_JSON, f"not UTF-8 text (byte {exc.start + 1} of "
                                                 "the line)")]
            except json.JSONDecodeError as exc:
                # MediaJsonlDataset's words (read_jsonl).
                problems = [_error(INVALID_JSON, f"not JSON ({exc.msg})")]
            else:
                problems, sample, length = _check_media_record(record, tokenize_fn)
            if sample is not None and max_length is not None and length > max_length:
                problems.append(_warning(TRUNCATED, f"{length} tokens; max_length={max_length} "
                                                    "cuts the text after the last media span"))
            for p in problems:
                chunk.counts[(p.severity, p.kind)] += 1
                if per_kind[p.kind] < max_shown:
                    per_kind[p.kind] += 1
                    chunk.shown.append((chunk.read, where, p))
            if sample is None:
                chunk.dropped[problems[0].kind] += 1
                continue
            chunk.lengths.append(length)
            chunk.trained += sum(1 for label in sample["labels"] if label != IGNORE_INDEX)
            chunk.truncated += max_length is not None and length > max_length
            if length > longest:  # the sample shown is the longest one
                longest = length
                chunk.sample = (where, sample["input_ids"], sample["labels"])
    report.merge(chunk, max_shown)
    if spec.pack and max_length and report.lengths:
        from .packing import plan_packed_rows

        report.packed_rows = len(plan_packed_rows([min(n, max_length) for n in report.lengths],
                                                  max_length))
    return report
