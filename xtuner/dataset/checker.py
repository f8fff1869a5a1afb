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

from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import DataError

from .formats import DataFormat
from .problems import (
    EMPTY,
    ERROR,
    MAP_FN,
    NO_TRAINABLE,
    TEMPLATE,
    TOKENIZE,
    TRUNCATED,
    WARNING,
    Problem,
)
from .record_checks import check_map_fn_output, validate_record
from .sources import callable_name, iter_source, parse_payload
from .specs import DatasetSpec

__all__ = ["DatasetReport", "check_dataset"]

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
        problems = check_map_fn_output(example, ctx.map_fn_name)
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
        record, problem = parse_payload(tag, payload)
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
                   map_fn_name=callable_name(spec.map_fn) if spec.map_fn else None,
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

