"""Shared plumbing for the CLI tools: argument parsing and error reporting.

Every tool script has ``main(argv=None) -> int`` and ends with
``sys.exit(run_main(main))``, so it behaves the same whether ``xtuner MODE`` runs it
in-process or ``torchrun`` runs the file directly.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from .errors import UsageError, XTunerError
from .launch import report_error

__all__ = ["ArgumentParser", "run_main", "debug_enabled", "quiet_dependency_chatter"]

# Warnings that dependencies log on every import and that a user can do nothing about:
# (logger name, start of the message). Anything else those loggers say still shows.
DEPENDENCY_CHATTER = (
    # bitsandbytes on an AVX512-BF16 CPU without the optional `kernels` package.
    ("bitsandbytes.backends.cpu.ops",
     "Failed to load CPU gemm_4bit_forward from kernels-community"),
    # DeepSpeed imported (by transformers' integrations) on a machine without a GPU.
    ("DeepSpeed", "Setting accelerator to CPU"),
)


def debug_enabled() -> bool:
    """``XTUNER_DEBUG=1`` shows tracebacks for user errors too."""
    return os.environ.get("XTUNER_DEBUG", "").lower() in ("1", "true", "yes")


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, not the usage text plus an error."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        raise UsageError(f"{message} (see `{self.prog} -h`)")


class _DropMessages(logging.Filter):
    """Drop the records of one logger whose message starts with ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_dependency_chatter() -> None:
    """Silence :data:`DEPENDENCY_CHATTER` (idempotent; the loggers need not exist yet)."""
    for name, prefix in DEPENDENCY_CHATTER:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessages(prefix))


def _stdout_closed(prog: str) -> int:
    """The reader of our stdout went away (``xtuner list-cfg | head``): say so in one line."""
    # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured by a test)
        pass
    print(f"{prog}: error: the output was closed before everything was written "
          "(e.g. by `| head`)", file=sys.stderr)
    return 2


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None,
             prog: str = "xtuner") -> int:
    """Run a tool's ``main`` and turn its outcome into an exit status.

    User errors (:class:`XTunerError`) and a closed stdout pipe print one line to stderr and
    return their exit code (2); ``-h`` returns 0; any other exception propagates with its
    traceback. Known dependency chatter is silenced first (:func:`quiet_dependency_chatter`).
    """
    quiet_dependency_chatter()
    try:
        code = main(argv)
        sys.stdout.flush()
    except SystemExit as exc:  # argparse's -h / --version
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except XTunerError as exc:
        if debug_enabled():
            raise
        report_error(f"{prog}: error: {exc}")
        return exc.exit_code
    except BrokenPipeError:
        if debug_enabled():
            raise
        return _stdout_closed(prog)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
