"""Check the raw training data a config describes, record by record (``check-custom-dataset``).

The work is split by job:

* :mod:`.sources`: which local files a config reads, read record by record with ``file:line``
  (or ``file:row N``) positions;
* :mod:`.record_checks`: one record against the format its ``dataset_map_fn`` expects;
* :mod:`.checker`: every record through the real map fn, template and tokenizer, in worker
  processes for large inputs, measured into a :class:`DatasetReport`;
* :mod:`.specs`: the config's datasets (each member of a ``ConcatDataset``);
* :mod:`.report`: the printed problems, summary and sample.

This module is the entry point (:func:`check_config`) and keeps the names that were imported
from it before the split.
"""
from __future__ import annotations

import sys

from .checker import DatasetReport, check_dataset
from .problems import (
    EMPTY,
    ERROR,
    INVALID_JSON,
    MAP_FN,
    MISSING_KEY,
    NO_TRAINABLE,
    ROLE_ORDER,
    TEMPLATE,
    TEMPLATE_TOKENS,
    TOKENIZE,
    TRUNCATED,
    UNKNOWN_KEY,
    UNKNOWN_ROLE,
    WARNING,
    WRONG_TYPE,
    Problem,
)
from .record_checks import validate_record
from .report import format_report
from .sources import DataSource, iter_source, resolve_sources
from .specs import DatasetSpec, dataset_specs

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
    "iter_source",
    "resolve_sources",
    "ERROR", "WARNING",
    "INVALID_JSON", "MISSING_KEY", "UNKNOWN_KEY", "WRONG_TYPE", "EMPTY", "ROLE_ORDER",
    "UNKNOWN_ROLE", "NO_TRAINABLE", "TRUNCATED", "MAP_FN", "TEMPLATE", "TOKENIZE",
    "TEMPLATE_TOKENS",
]


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
