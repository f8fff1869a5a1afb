"""What can be wrong with a training record: :class:`Problem`, its kinds, and how bad records
are reported (one :class:`DataError` listing ``file:line`` problems) or skipped (one log line).

Shared by ``xtuner check-custom-dataset`` (:mod:`.checker`) and by the early checks of
``process_hf_dataset`` (:mod:`.raw_check`, :mod:`.guarded_map`), so both speak the same lines.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mmengine import print_log

from xtuner.utils.errors import DataError

__all__ = [
    "Problem", "ERROR", "WARNING", "describe_value", "json_type", "raise_or_log_bad_records",
    "INVALID_JSON", "MISSING_KEY", "UNKNOWN_KEY", "WRONG_TYPE", "EMPTY", "ROLE_ORDER",
    "UNKNOWN_ROLE", "NO_TRAINABLE", "TRUNCATED", "MAP_FN", "TEMPLATE", "TOKENIZE",
    "TEMPLATE_TOKENS", "DROPPING", "Tally", "log_warnings", "no_usable_sample",
    "MISSING_IMAGE", "UNREADABLE_IMAGE", "IMAGE_COUNT", "TOO_LONG", "BAD_PAIR",
    "MISSING_MEDIA", "MEDIA_FORMAT", "UNREADABLE_MEDIA", "MEDIA_COUNT", "SPECIAL_TOKENS",
    "BAD_MEDIA_RECORD",
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
TEMPLATE_TOKENS = "template tokens missing"
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"
IMAGE_COUNT = "image count"
TOO_LONG = "too long"
BAD_PAIR = "bad preference record"
MISSING_MEDIA = "missing media"
MEDIA_FORMAT = "unsupported media"
UNREADABLE_MEDIA = "unreadable media"
MEDIA_COUNT = "placeholder count"
SPECIAL_TOKENS = "special tokens in text"
BAD_MEDIA_RECORD = "bad media record"

ERROR, WARNING = "error", "warning"

# Warnings that drop their record: the record is well-formed, but a map fn that drops records
# on purpose left nothing of it, or the settings leave no token to train on (as in v0).
DROPPING = (EMPTY, NO_TRAINABLE, TOO_LONG)

_SHOWN = 5  # bad records located in a DataError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a record."""

    severity: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.kind}: {self.detail}"

    @classmethod
    def error(cls, kind: str, detail: str) -> Problem:
        return cls(ERROR, kind, detail)

    @classmethod
    def warning(cls, kind: str, detail: str) -> Problem:
        return cls(WARNING, kind, detail)


def json_type(value: Any) -> str:
    """``a string``, ``a number``, ``null``...: the JSON name of ``value``'s type."""
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


def describe_value(value: Any) -> str:
    """``a number (42)``: the JSON type of ``value`` and a short rendering of it."""
    kind = json_type(value)
    if value is None:
        return kind
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} ({text})"


@dataclass
class Tally:
    """What processing one dataset dropped and warned about.

    Attributes:
        dropped: problem kind -> records dropped for it (for :func:`no_usable_sample`).
        warnings: the warning lines logged, kept with a cached result so that a run reusing
            it logs them again.
    """

    dropped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def warn(self, line: str) -> None:
        """Log ``line`` as a warning and keep it."""
        self.warnings.append(line)
        print_log(line, logger="current", level=logging.WARNING)


def _warn(line: str, tally: Tally | None) -> None:
    if tally is not None:
        tally.warn(line)
    else:
        print_log(line, logger="current", level=logging.WARNING)


def _more(locations: list, shown: int = _SHOWN) -> str:
    if len(locations) <= 1:
        return ""
    rest = ", ".join(str(loc) for loc in locations[1:shown])
    return f" (also {rest}{', ...' if len(locations) > shown else ''})"


def _by_kind(problems) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in Counter(problems).most_common())


def raise_or_log_bad_records(bad: list[tuple[Any, Problem]], skip: bool,
                             total: int | None = None, tally: Tally | None = None) -> None:
    """Fail on bad training records, or log that they are skipped.

    The error is one line: the first bad record in the very words
    ``xtuner check-custom-dataset`` prints for it (``file:line: error: kind: detail``), where
    the next ones are, and the fix.

    Args:
        bad: ``(location, problem)`` of each bad record, in data order; a location prints as
            ``file:line``, ``file:row N`` or ``row N of the dataset``.
        skip: log one warning with the count per kind instead of raising.
        total: records the data holds; when every one is bad, skipping is refused too, since
            nothing would be left to train on.
        tally: where the skipped records are counted and the warning kept.

    Raises:
        DataError: ``bad`` is not empty and ``skip`` is off (or nothing would be left).
    """
    if not bad:
        return
    everything = total is not None and len(bad) >= total
    first = f"{bad[0][0]}: {bad[0][1]}{_more([loc for loc, _ in bad])}"
    if everything and skip:
        raise DataError(f"no usable training sample: all {len(bad)} records are bad "
                        f"({_by_kind(p.kind for _, p in bad)}); first: {first}; fix the data "
                        "or the dataset_map_fn (`xtuner check-custom-dataset CONFIG` lists "
                        "every record)")
    if not skip:
        raise DataError(f"{len(bad)} bad record{'s' * (len(bad) != 1)} in the training data: "
                        f"{first}; fix the records (`xtuner check-custom-dataset CONFIG` lists "
                        "every one), or skip them with XTUNER_SKIP_BAD_RECORDS=1 "
                        "(process_hf_dataset(skip_bad_records=True))")
    if tally is not None:
        tally.dropped.update(p.kind for _, p in bad)
    _warn(f"skipped {len(bad)} bad records ({_by_kind(p.kind for _, p in bad)}); first: "
          f"{bad[0][0]}: {bad[0][1]}", tally)


def log_warnings(warnings: list[tuple[Any, Problem]], tally: Tally | None = None) -> None:
    """Log what ``xtuner check-custom-dataset`` calls warnings: one line per kind, with the
    count, the first record's problem as the checker prints it, and where the next ones are."""
    by_kind: dict[str, list[tuple[Any, Problem]]] = {}
    for loc, problem in warnings:
        by_kind.setdefault(problem.kind, []).append((loc, problem))
    for kind, items in by_kind.items():
        n = len(items)
        _warn(f"{n} record{'s' * (n != 1)} with a '{kind}' warning; first: {items[0][0]}: "
              f"{items[0][1]}{_more([loc for loc, _ in items])}", tally)


def no_usable_sample(read: int, where: str, dropped: Counter) -> DataError:
    """The one-line error for training data of which no sample is left: how many records
    were read and why each kind was dropped."""
    if read == 0:
        return DataError(f"no usable training sample: {where} has no records; fill it, or point "
                         "the config's data_files at the file that holds them")
    reasons = ", ".join(f"{n} {kind}" for kind, n in dropped.most_common()) or "none"
    return DataError(f"no usable training sample: {read} record{'s' * (read != 1)} read from "
                     f"{where}, every one dropped ({reasons}); fix the data or the settings "
                     "that drop them (max_length, dataset_map_fn, template); "
                     "`xtuner check-custom-dataset CONFIG` shows each record")
