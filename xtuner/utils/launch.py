"""``python -m xtuner.utils.launch TORCHRUN_ARGS``: torchrun (``torch.distributed.run``) that
reports a failed worker in one line.

When a worker exits non-zero, torchrun raises ``ChildFailedError`` and prints a traceback and
a failure table, although the worker has already said what went wrong (xtuner's tools print
one line for a user's mistake). Here the traceback and the table give way to one line naming
the first rank that failed (torchrun's own log line about the failed process stays), and the
run exits with that worker's exit status.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun with ``argv``; 0, or the first failed worker's exit status (128 + N when
    signal N killed it)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(list(sys.argv[1:] if argv is None else argv))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code < 0:  # killed by a signal (e.g. 9: out of host memory)
            print(f"xtuner: worker rank {rank} was killed by signal {-code}; see the messages "
                  "above", file=sys.stderr)
            return 128 - code
        print(f"xtuner: worker rank {rank} failed with exit status {code}; see its messages "
              "above", file=sys.stderr)
        return code or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
