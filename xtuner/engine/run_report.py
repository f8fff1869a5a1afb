"""What ``xtuner train`` says on the terminal and at the end of its log file.

* :func:`quiet_console`: while the runner is built, mmengine logs the environment, the whole
  config and the hook order (~330 lines). They go to the run's log file; the terminal gets them
  only with ``--verbose``.
* :func:`summary_line`, :func:`interrupted_line`: one line that ends every run, saying what was
  done, where the checkpoints and the log are and what to run next.
* :func:`log_to_file`: writes a line (e.g. the one-line error the terminal shows) to the log
  file only.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os.path as osp
import re
import sys
from collections.abc import Iterator

__all__ = ["quiet_console", "log_to_file", "summary_line", "interrupted_line",
           "last_checkpoint"]

# mmengine's Runner.__init__ dumps: environment, config, hook order (its StreamHandler writes
# one record per write() call, so these patterns match whole records).
_DUMPS = (
    re.compile(r"mmengine - INFO - \n-+\nSystem environment:"),
    re.compile(r"mmengine - INFO - Config:\n"),
    re.compile(r"mmengine - INFO - Hooks will be executed in the following order:"),
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _ConsoleGate(io.TextIOBase):
    """A stand-in for stdout that drops mmengine's startup dumps and passes everything else."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        plain = _ANSI.sub("", text)
        if any(p.search(plain) for p in _DUMPS):
            return len(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", "utf-8")


@contextlib.contextmanager
def quiet_console(verbose: bool = False) -> Iterator[None]:
    """Build the runner inside this block: its startup dumps reach the log file only.

    mmengine's logger binds its console handler to ``sys.stdout`` when the runner creates it;
    inside the block that is a gate, and on leaving every handler bound to the gate is pointed
    back at the real stdout.
    """
    if verbose:
        yield
        return
    real = sys.stdout
    gate = _ConsoleGate(real)
    try:
        with contextlib.redirect_stdout(gate):
            yield
    finally:
        _rebind_handlers(gate, real)


def _rebind_handlers(gate, real) -> None:
    from mmengine.logging import MMLogger

    for logger in list(MMLogger._instance_dict.values()):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is gate:
                handler.setStream(real)


def _file_handlers(logger) -> list[logging.FileHandler]:
    return [h for h in getattr(logger, "handlers", []) if isinstance(h, logging.FileHandler)]


def log_to_file(message: str, level: int = logging.ERROR, logger=None) -> bool:
    """Append ``message`` to the current run's log file (not the terminal).

    Returns:
        Whether a log file was written (there is none before the runner exists).
    """
    if logger is None:
        from mmengine.logging import MMLogger

        if not MMLogger._instance_dict:
            return False
        logger = MMLogger.get_current_instance()
    handlers = _file_handlers(logger)
    if not handlers:
        return False
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
    for handler in handlers:
        handler.handle(record)
        handler.flush()
    return True


def last_checkpoint(work_dir: str) -> str | None:
    """The checkpoint ``work_dir/last_checkpoint`` names, if it names one that exists."""
    marker = osp.join(work_dir, "last_checkpoint")
    if not osp.isfile(marker):
        return None
    with open(marker, encoding="utf-8") as f:
        path = f.read().strip()
    return path if path and osp.exists(path) else None


def _final_loss(runner) -> float | None:
    hub = getattr(runner, "message_hub", None)
    if hub is None or "train/loss" not in hub.log_scalars:
        return None
    return float(hub.get_scalar("train/loss").current())


def _log_file(runner) -> str | None:
    return getattr(getattr(runner, "logger", None), "log_file", None)


def _train_command(config: str, work_dir: str, with_options: bool = False) -> str:
    extra = " (and the same --cfg-options)" if with_options else ""
    return f"`xtuner train {config} --work-dir {work_dir}{{}}`{extra}"


def summary_line(runner, config: str, seconds: float | None = None) -> str:
    """One line for a finished run: iterations, final loss, checkpoint, log, how to convert."""
    work_dir = runner.work_dir
    parts = [f"Finished {runner.iter} iterations"]
    loss = _final_loss(runner)
    if loss is not None:
        parts[0] += f" (last iteration's loss {loss:.4f})"
    if seconds is not None:
        parts[0] += f" in {seconds:.0f} s"
    ckpt = last_checkpoint(work_dir)
    if ckpt:
        parts.append(f"last checkpoint {ckpt}")
        parts.append(f"convert it with `xtuner convert pth_to_hf {config} {ckpt} ./hf`")
    else:
        parts.append(f"no checkpoint was saved in {work_dir}")
    log = _log_file(runner)
    if log:
        parts.append(f"log {log}")
    return "; ".join(parts)


def interrupted_line(runner, config: str, work_dir: str, with_options: bool = False) -> str:
    """One line for a run stopped by Ctrl-C: where it stopped and how to go on."""
    at = f" at iteration {runner.iter}" if runner is not None else ""
    command = _train_command(config, work_dir, with_options)
    ckpt = last_checkpoint(work_dir)
    if ckpt:
        return f"Interrupted{at}; resume from {ckpt} with {command.format(' --resume auto')}"
    return (f"Interrupted{at}, before any checkpoint was saved in {work_dir}; "
            f"{command.format('')} starts again")
