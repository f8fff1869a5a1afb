"""User-facing errors.

A user's mistake raises an :class:`XTunerError` subclass whose message says what was found,
what was expected and how to fix it. The CLI prints that one message and exits with status 2;
any other exception is a bug in xtuner and is shown with its traceback (exit status 1).
"""

__all__ = [
    "XTunerError",
    "ConfigError",
    "DataError",
    "UsageError",
    "SetupError",
    "CheckpointError",
]


class XTunerError(Exception):
    """Base class of errors caused by the user's input, config, data or environment."""

    exit_code = 2


class UsageError(XTunerError):
    """Bad command-line usage (unknown mode, bad flag, missing argument)."""


class ConfigError(XTunerError):
    """A config that cannot be found, parsed or applied."""


class DataError(XTunerError):
    """Training data that cannot be read or does not fit the pipeline."""


class CheckpointError(XTunerError):
    """A checkpoint that is missing, broken or does not match the config."""


class SetupError(XTunerError):
    """The machine lacks something the request needs (a GPU, an optional package)."""


def did_you_mean(word: str, candidates, n: int = 3) -> str:
    """Return ``" (did you mean 'a', 'b'?)"`` for close matches of ``word``, or ``""``."""
    import difflib

    matches = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not matches:
        return ""
    return " (did you mean " + ", ".join(repr(m) for m in matches) + "?)"
