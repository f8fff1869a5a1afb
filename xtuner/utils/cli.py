"""Shared plumbing for the CLI tools: argument parsing and error reporting.

Every tool script has ``main(argv=None) -> int`` and ends with
``sys.exit(run_main(main))``, so it behaves the same whether ``xtuner MODE`` runs it
in-process or ``torchrun`` runs the file directly.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .errors import UsageError, XTunerError

__all__ = ["ArgumentParser", "run_main", "debug_enabled"]


def debug_enabled() -> bool:
    """``XTUNER_DEBUG=1`` shows tracebacks for user errors too."""
    return os.environ.get("XTUNER_DEBUG", "").lower() in ("1", "true", "yes")


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, not the usage text plus an error."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        raise UsageError(f"{message} (see `{self.prog} -h`)")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None,
             prog: str = "xtuner") -> int:
    """Run a tool's ``main`` and turn its outcome into an exit status.

    User errors (:class:`XTunerError`) print one line to stderr and return their exit code
    (2); ``-h`` returns 0; any other exception propagates with its traceback.
    """
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's -h / --version
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except XTunerError as exc:
        if debug_enabled():
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
