"""``datasets.map`` stages whose failures name the record, not a frame deep inside ``datasets``.

A map fn, a template or the tokenizer may raise on a record it does not expect (a ``null``
field, a number where text was meant). Run plainly under ``Dataset.map``, that is a stack
trace from a worker process. Here each stage runs as a batched map of a
:class:`GuardedStage`, which calls the function record by record, catches what it raises and
marks that row in an extra column; after the stage the marked rows become one
:class:`DataError` listing ``file:line`` (or ``file:row N``) problems, or, with
``skip_bad_records``, are dropped and counted in the log.

Rows are traced back through a ``_xtuner_row`` column added when the data is loaded
(:func:`add_row_ids`), so the location survives shuffling, subsetting and filtering.
``XTUNER_DEBUG=1`` lets the first exception through with its traceback.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xtuner.utils.cli import debug_enabled
from xtuner.utils.errors import DataError

from .problems import ERROR, Problem, Tally, log_warnings, raise_or_log_bad_records

__all__ = ["ROW", "Step", "GuardedStage", "add_row_ids", "run_stage", "drop_row_ids"]

ROW = "_xtuner_row"
_ERROR = "_xtuner_error"
_WARNING = "_xtuner_warning"
_SEP = "\x1e"  # between the warnings of one row


def add_row_ids(dataset):
    """``dataset`` with a ``_xtuner_row`` column: each row's position as loaded."""
    import numpy as np

    return dataset.add_column(ROW, np.arange(len(dataset), dtype=np.int64))


def drop_row_ids(dataset):
    """``dataset`` without the ``_xtuner_row`` column (a no-op when it has none)."""
    return dataset.remove_columns(ROW) if ROW in dataset.column_names else dataset


class _AllRowsFailed(DataError):
    """Every row of a worker's first batch failed: there is no row to copy the column types
    from (see :meth:`GuardedStage.__call__`). Carries the encoded errors to the parent."""

    def __init__(self, errors: list[str]):
        super().__init__(f"{len(errors)} records failed")
        self.errors = errors

    def __reduce__(self):
        # Pickled back from a `datasets` worker process with its payload.
        return type(self), (self.errors,)


@dataclass
class Step:
    """One function of a :class:`GuardedStage`.

    Attributes:
        fn: ``fn(example) -> dict`` (a map fn, a template, a tokenizing function).
        kind: the problem kind a failure is reported as (``MAP_FN``, ``TEMPLATE``,
            ``TOKENIZE``).
        name: how the message names ``fn`` (``alpaca_map_fn raised TypeError: ...``).
        check: optional ``check(output) -> list[Problem]`` (the checks
            ``xtuner check-custom-dataset`` makes at this step); an error marks the row, a
            warning is logged after the stage.
        batch_fn: optional ``batch_fn(examples) -> outputs`` computing a whole batch at once
            (a tokenizer's batch call); when it raises, the rows are retried one by one with
            ``fn`` to find the culprit.
        finish: optional ``finish(output) -> output`` applied after ``check`` (e.g. the cut to
            ``max_length``, so the check sees the whole sample).
    """

    fn: Callable[[dict], Any]
    kind: str
    name: str
    check: Callable[[Any], list[Problem]] | None = None
    batch_fn: Callable[[list[dict]], list[Any]] | None = None
    finish: Callable[[Any], Any] | None = None

    def one(self, example: dict) -> tuple[Any, str | None, list[str]]:
        """``(output, None, warnings)`` or ``(None, encoded error, warnings)`` for one
        example."""
        try:
            out = self.fn(example)
        # A map fn (often the user's own) or a tokenizer can raise anything on data it does
        # not expect; the exception is reported against its record, with its type and text.
        except Exception as exc:  # noqa: BLE001
            if debug_enabled():
                raise
            return None, f"{self.kind}\t{self.name} raised {type(exc).__name__}: {exc}", []
        return self.checked(out)

    def checked(self, out: Any) -> tuple[Any, str | None, list[str]]:
        problems = self.check(out) if self.check is not None else []
        warnings = [f"{p.kind}\t{p.detail}" for p in problems if p.severity != ERROR]
        error = next((p for p in problems if p.severity == ERROR), None)
        if error is not None:
            return None, f"{error.kind}\t{error.detail}", warnings
        return (self.finish(out) if self.finish is not None else out), None, warnings

    def many(self, examples: list[dict]) -> list[tuple[Any, str | None, list[str]]]:
        """:meth:`one` of each example, through ``batch_fn`` when there is one."""
        if self.batch_fn is not None:
            try:
                outputs = self.batch_fn(examples)
            except Exception:  # noqa: BLE001 - retried row by row below, which reports it
                if debug_enabled():
                    raise
            else:
                return [self.checked(out) for out in outputs]
        return [self.one(example) for example in examples]


class GuardedStage:
    """A batched ``datasets.map`` function running its steps on each row, failures marked.

    Each step gets the previous step's output (the first gets the row); the row's result is
    the union of the steps' outputs, later ones winning, as consecutive ``Dataset.map`` calls
    would give. A row whose step fails skips the later steps.
    """

    def __init__(self, *steps: Step):
        self.steps = steps
        self._placeholder: dict | None = None

    def _run(self, examples: list[dict]) -> list[tuple[dict | None, str | None, list[str]]]:
        results: list[tuple[dict | None, str | None, list[str]]] = [
            ({}, None, []) for _ in examples]
        current = examples
        for step in self.steps:
            live = [i for i, (_, error, _) in enumerate(results) if error is None]
            outputs = step.many([current[i] for i in live])
            current = list(current)
            for i, (out, error, warnings) in zip(live, outputs):
                done, _, seen = results[i]
                if error is None:
                    results[i] = ({**done, **out}, None, seen + warnings)
                    current[i] = out
                else:
                    results[i] = (None, error, seen + warnings)
        return results

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        columns = [k for k in batch if k != ROW]
        examples = [dict(zip(columns, values))
                    for values in zip(*(batch[k] for k in columns))]
        results = self._run(examples)
        errors = ["" if error is None else f"{row}\t{error}"
                  for row, (_, error, _) in zip(batch[ROW], results)]
        warnings = [_SEP.join(f"{row}\t{w}" for w in found)
                    for row, (_, _, found) in zip(batch[ROW], results)]
        good = next((out for out, error, _ in results if error is None), None)
        if good is not None:
            self._placeholder = good
        elif self._placeholder is None:
            # `datasets` takes a column's type from the first batch it writes; a batch of
            # placeholders would have none. 1000 failing rows in a row are no stray records.
            raise _AllRowsFailed([e for e in errors if e])
        # A failed row carries a good row's values, so every column keeps one type; the
        # marked rows are dropped (or reported) right after the stage.
        filler = self._placeholder
        out = {key: [(value if error is None else filler).get(key)
                     for value, error, _ in results] for key in filler}
        out[_ERROR] = errors
        out[_WARNING] = warnings
        return out


def _decode(error: str, locate) -> tuple[Any, Problem]:
    row, kind, detail = error.split("\t", 2)
    return locate(int(row)), Problem.error(kind, detail)


def _marked(dataset, column: str) -> list[str]:
    import pyarrow.compute as pc

    values = dataset.with_format("arrow")[column]
    marked = pc.not_equal(values, "")
    if not pc.any(marked).as_py():
        return []
    return pc.filter(values, marked).to_pylist()


def _warnings(dataset, locate) -> list[tuple[Any, Problem]]:
    out = []
    for cell in _marked(dataset, _WARNING):
        for item in cell.split(_SEP):
            row, kind, detail = item.split("\t", 2)
            out.append((locate(int(row)), Problem.warning(kind, detail)))
    return out


def _keep_unmarked(errors: list[str]) -> list[bool]:
    return [error == "" for error in errors]


def run_stage(dataset, stage: GuardedStage, locate: Callable[[int], Any], skip: bool,
              num_proc: int | None, desc: str, remove_columns=None,
              tally: Tally | None = None):
    """``dataset.map(stage)``, then fail on (or, with ``skip``, drop) the rows it marked and
    log the warnings its checks found.

    Args:
        dataset: rows with a ``_xtuner_row`` column (:func:`add_row_ids`).
        stage: the guarded function.
        locate: ``locate(row)`` is where row ``row`` of the loaded data came from.
        skip: drop failed rows (logged with counts) instead of raising.
        num_proc: worker processes for ``datasets.map``.
        desc: the progress bar's label.
        remove_columns: columns the map removes (as in ``Dataset.map``).
        tally: where dropped rows are counted and warnings kept.

    Raises:
        DataError: a row failed and ``skip`` is off, or every row of a worker's first batch
            failed.
    """
    if len(dataset) == 0:
        return dataset
    try:
        dataset = dataset.map(stage, batched=True, num_proc=num_proc, desc=desc,
                              remove_columns=remove_columns)
    except _AllRowsFailed as exc:
        bad = [_decode(e, locate) for e in exc.errors]
        if skip and len(bad) == len(dataset):
            # Every row failed: nothing is left, and the caller says why over all stages.
            raise_or_log_bad_records(bad, skip, tally=tally)
            return dataset.select([])
        raise_or_log_bad_records(bad, skip, total=len(bad))
    errors = _marked(dataset, _ERROR)
    # With `skip`, a stage that leaves nothing is not refused here: the caller says why every
    # record was dropped, over all stages.
    raise_or_log_bad_records([_decode(e, locate) for e in errors], skip, tally=tally)
    log_warnings(_warnings(dataset, locate), tally)
    if errors:
        dataset = dataset.filter(_keep_unmarked, input_columns=[_ERROR], batched=True,
                                 num_proc=num_proc, desc=f"{desc}: drop bad records")
    return dataset.remove_columns([_ERROR, _WARNING])
