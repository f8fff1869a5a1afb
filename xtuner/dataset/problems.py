"""What can be wrong with a training record: :class:`Problem`, its kinds, and how bad records
are reported (one :class:`DataError` listing ``file:line`` problems) or skipped (one log line).

Shared by ``xtuner check-custom-dataset`` (:mod:`.checker`) and by the early checks of
``process_hf_dataset`` (:mod:`.raw_check`, :mod:`.guarded_map`), so both speak the same lines.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mmengine import print_log

from xtuner.utils.errors import DataError

__all__ = [
    "Problem", "ERROR", "WARNING", "describe_value", "json_type", "raise_or_log_bad_records",
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

_SHOWN = 5  # bad records quoted in a DataError


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


def raise_or_log_bad_records(bad: list[tuple[Any, Problem]], skip: bool,
                             total: int | None = None) -> None:
    """Fail on bad training records, or log that they are skipped.

    Args:
        bad: ``(location, problem)`` of each bad record, in data order; a location prints as
            ``file:line``, ``file:row N`` or ``row N of the dataset``.
        skip: log one warning with the count per kind instead of raising.
        total: records the data holds; when every one is bad, skipping is refused too, since
            nothing would be left to train on.

    Raises:
        DataError: ``bad`` is not empty and ``skip`` is off (or nothing would be left). The
            message lists the first problems with their location, the total, and how to
            check or skip.
    """
    if not bad:
        return
    everything = total is not None and len(bad) >= total
    if not skip or everything:
        lines = "\n".join(f"  {loc}: {p}" for loc, p in bad[:_SHOWN])
        more = f"\n  ... and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        how = ("fix the data or the dataset_map_fn (no record is usable, so skipping is "
               "refused)" if everything and skip else
               "fix the records, or skip them with XTUNER_SKIP_BAD_RECORDS=1 "
               "(process_hf_dataset(skip_bad_records=True))")
        raise DataError(f"{len(bad)} bad record{'s' * (len(bad) != 1)} in the training data:\n"
                        f"{lines}{more}\nRun `xtuner check-custom-dataset CONFIG` for a full "
                        f"report; {how}")
    reasons = Counter(p.kind for _, p in bad)
    print_log(f"skipped {len(bad)} bad records (" + ", ".join(
        f"{kind}: {n}" for kind, n in reasons.most_common()) + f"); first: {bad[0][0]}: "
        f"{bad[0][1]}", logger="current", level=logging.WARNING)
