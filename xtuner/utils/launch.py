"""``python -m xtuner.utils.launch TORCHRUN_ARGS``: torchrun (``torch.distributed.run``) that
reports a failed run in one line.

Every worker reads the same config, so a user's mistake would print the same one-line error
once per rank. Under this launcher the workers hand their one-line errors to it instead
(:func:`report_error`, through the folder named by ``XTUNER_ERROR_DIR``), and it prints each
distinct line once when the run has ended. When a worker exits non-zero, torchrun raises
``ChildFailedError`` and prints a traceback and a failure table; here they give way to the
workers' lines, or, where a worker left none (a crash with its own traceback), to one line
naming the first rank that failed; a worker killed by a signal is named after the lines the
others left. torchrun's own "failed (exitcode: ...)" log line, which says the same, is
dropped. The run exits with that worker's exit status (128 + N for signal N).
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ERROR_DIR_ENV = "XTUNER_ERROR_DIR"


def report_error(line: str) -> None:
    """Print a user error's one line to stderr, or, in a worker of this launcher, leave it for
    the launcher to print once for all ranks."""
    folder, rank = os.environ.get(ERROR_DIR_ENV), os.environ.get("RANK")
    if folder and rank is not None and os.path.isdir(folder):
        Path(folder, f"rank{rank}").write_text(line, encoding="utf-8")
        return
    print(line, file=sys.stderr)


def _workers_errors(folder: str) -> list[str]:
    """The distinct lines the workers reported, in rank order."""
    files = sorted(Path(folder).glob("rank*"), key=lambda p: int(p.name[4:]))
    return list(dict.fromkeys(p.read_text(encoding="utf-8") for p in files))


def _not_a_worker_failure(record: logging.LogRecord) -> bool:
    """False for torchrun's "failed (exitcode: ...)" record: :func:`main` reports it."""
    return not str(record.msg).startswith("failed (exitcode")


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun with ``argv``; 0, or the first failed worker's exit status (128 + N when
    signal N killed it)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    logging.getLogger("torch.distributed.elastic.multiprocessing.api").addFilter(
        _not_a_worker_failure)

    with tempfile.TemporaryDirectory(prefix="xtuner-errors-") as folder:
        os.environ[ERROR_DIR_ENV] = folder  # the workers inherit it
        try:
            torchrun(list(sys.argv[1:] if argv is None else argv))
        except ChildFailedError as exc:
            rank, failure = exc.get_first_failure()
            code = failure.exitcode
            errors = _workers_errors(folder)
            for line in errors:
                print(line, file=sys.stderr)
            if code < 0:  # killed by a signal (e.g. 9: out of host memory)
                print(f"xtuner: worker rank {rank} was killed by signal {-code}; see the "
                      "messages above", file=sys.stderr)
                return 128 - code
            if not errors:
                print(f"xtuner: worker rank {rank} failed with exit status {code}; see its "
                      "messages above", file=sys.stderr)
            return code or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
