"""Model code shipped in a model folder runs only when the user allows it.

A model folder whose ``config.json`` (or ``tokenizer_config.json``) has an ``auto_map`` names
Python files of its own; transformers imports them only with ``trust_remote_code=True``. The
tools never pass that on their own: ``--trust-remote-code`` allows it for one command, and a
config's own ``trust_remote_code=True`` stays the config author's choice.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .errors import UsageError

__all__ = ["CONFIG_HINT", "RemoteCodeError", "add_trust_remote_code_argument", "remote_code_errors",
           "set_trust_remote_code"]



def add_trust_remote_code_argument(parser, whose: str = "the model folder's",
                                   config: bool = False) -> None:
    """``--trust-remote-code``, the same in every tool that loads a model or tokenizer.

    Args:
        parser: the tool's ``ArgumentParser``.
        whose: whose code it allows, e.g. ``"BASE's"``.
        config: the tool reads a config: the flag acts as its ``trust_remote_code=True``.
    """
    as_config = (", as if the config set trust_remote_code=True (a config that sets it keeps "
                 "it)") if config else ""
    parser.add_argument("--trust-remote-code", action="store_true",
                        help=f"allow {whose} own Python code (the 'auto_map' of its config) to "
                        f"run{as_config}; only for models you trust")


#: How to allow the code of a model that a config names.
CONFIG_HINT = ("pass --trust-remote-code (or set trust_remote_code=True in the config's "
               "model.llm and tokenizer)")


class RemoteCodeError(UsageError):
    """A model or tokenizer needs its own code, and running it was not allowed."""


def _is_remote_code_refusal(exc: ValueError) -> bool:
    # transformers' resolve_trust_remote_code: "... contains custom code which must be executed
    # ... Please pass the argument `trust_remote_code=True` to allow custom code to be run."
    return "trust_remote_code=True" in str(exc)


@contextlib.contextmanager
def remote_code_errors(what: str, hint: str = "pass --trust-remote-code") -> Iterator[None]:
    """Turn transformers' refusal to run a folder's own code into one-line error.

    Args:
        what: the model the block loads, as the user named it (a folder, a hub id, a config).
        hint: how to allow the code.

    Raises:
        RemoteCodeError: the block raised transformers' ``trust_remote_code`` ``ValueError``;
            every other exception passes unchanged.
    """
    try:
        yield
    except ValueError as exc:
        if not _is_remote_code_refusal(exc):
            raise
        raise RemoteCodeError(f"{what} ships its own Python code (an 'auto_map' in its "
                              f"config), which runs only when allowed: {hint} if you trust "
                              "it") from exc


def _loads_pretrained(node: dict) -> bool:
    if "pretrained_model_name_or_path" not in node:
        return False
    kind = node.get("type")
    name = kind if isinstance(kind, str) else getattr(kind, "__qualname__", str(kind))
    return "from_pretrained" in name


def set_trust_remote_code(cfg, allow: bool) -> int:
    """Set ``trust_remote_code`` on every ``*.from_pretrained`` dict of a config, in place.

    With ``allow`` every such dict gets ``True`` (``--trust-remote-code``). Without it, a dict
    that does not say gets ``False``: transformers would otherwise ask on the terminal (reading
    a line of a piped input) or fail after a timeout. A dict that says ``True`` keeps it.

    Returns:
        How many dicts were visited.
    """
    seen = 0

    def visit(node) -> None:
        nonlocal seen
        if isinstance(node, dict):
            if _loads_pretrained(node):
                seen += 1
                if allow:
                    node["trust_remote_code"] = True
                elif node.get("trust_remote_code") is None:
                    node["trust_remote_code"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(cfg._cfg_dict if hasattr(cfg, "_cfg_dict") else cfg)
    return seen
