"""Where the shipped config catalog and tool scripts live, and name lookup in them.

After ``pip install .`` the catalog is ``xtuner/configs`` and the tools ``xtuner/tools``
inside the package. With an editable install (or a plain checkout on ``PYTHONPATH``) those
copies do not exist, so the repository's top-level ``configs/`` and ``tools/`` are used.

Also the checks every ``xtuner convert`` tool makes on what it will write: where
(:func:`check_output_location`) and in which file sizes (:func:`max_shard_size`).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError, UsageError, did_you_mean

__all__ = [
    "package_dir",
    "configs_dir",
    "tools_dir",
    "config_catalog",
    "resolve_config",
    "resolve_deepspeed_config",
    "looks_local",
    "check_model_folder",
    "check_output_location",
    "max_shard_size",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def package_dir() -> Path:
    """The installed ``xtuner`` package directory."""
    return PACKAGE_DIR


def _shipped_dir(name: str) -> Path:
    inside = PACKAGE_DIR / name
    if inside.is_dir():
        return inside
    in_repo = PACKAGE_DIR.parent / name
    if in_repo.is_dir():
        return in_repo
    raise FileNotFoundError(
        f"xtuner's '{name}' folder is missing: looked in {inside} and {in_repo}. "
        "Reinstall xtuner (pip install .) from a complete checkout."
    )


def configs_dir() -> Path:
    """The folder holding the config catalog (Python configs and DeepSpeed JSONs)."""
    return _shipped_dir("configs")


def tools_dir() -> Path:
    """The folder holding one script per CLI mode."""
    return _shipped_dir("tools")


def _is_catalog_entry(path: Path, root: Path) -> bool:
    if path.suffix not in (".py", ".json"):
        return False
    # `_base_` folders and private helpers are building blocks, not runnable configs.
    return not any(part.startswith(("_", ".")) for part in path.relative_to(root).parts)


@lru_cache(maxsize=1)
def config_catalog() -> dict[str, Path]:
    """Map every catalog entry's file stem to its path.

    Raises:
        ConfigError: two shipped files share a stem (names must be unique for lookup).
    """
    root = configs_dir()
    catalog: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not _is_catalog_entry(path, root):
            continue
        if path.stem in catalog:
            raise ConfigError(
                f"two catalog entries are named '{path.stem}': {catalog[path.stem]} and {path}"
            )
        catalog[path.stem] = path
    return catalog


def resolve_config(name_or_path: str) -> Path:
    """Return the config file for a path or a catalog name.

    Raises:
        ConfigError: neither an existing file nor a known catalog name.
    """
    path = Path(os.path.expanduser(name_or_path))
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        what = ("it holds a Hugging Face model: set pretrained_model_name_or_path to it in a "
                "config" if (path / "config.json").is_file() else "give the config file")
        raise ConfigError(f"'{name_or_path}' is a folder, not a config file; {what} (see "
                          "`xtuner list-cfg` and `xtuner copy-cfg`)")
    if path.suffix == ".py" or os.sep in name_or_path:
        raise ConfigError(f"config file not found: {name_or_path}")
    catalog = {k: v for k, v in config_catalog().items() if v.suffix == ".py"}
    if name_or_path in catalog:
        return catalog[name_or_path]
    raise ConfigError(
        f"no config file or catalog config named '{name_or_path}'"
        f"{did_you_mean(name_or_path, catalog)}; see `xtuner list-cfg`"
    )


def resolve_deepspeed_config(name_or_path: str) -> Path:
    """Return the DeepSpeed JSON for a path or a shipped name such as ``deepspeed_zero2``.

    Raises:
        ConfigError: neither an existing file nor a shipped DeepSpeed config.
    """
    path = Path(os.path.expanduser(name_or_path))
    if path.is_file():
        return path.resolve()
    shipped = {k: v for k, v in config_catalog().items() if v.suffix == ".json"}
    if name_or_path in shipped:
        return shipped[name_or_path]
    choices = ", ".join(sorted(shipped))
    raise ConfigError(
        f"unknown DeepSpeed config '{name_or_path}'{did_you_mean(name_or_path, shipped)}; "
        f"give a JSON file or one of: {choices}"
    )


def looks_local(name: str) -> bool:
    """True when ``name`` can only be a local path: a hub id is ``name`` or ``org/name``."""
    return (name.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in name)
            or name.count("/") > 1)


def check_model_folder(name: str, key: str = "pretrained_model_name_or_path",
                       adapter_ok: bool = False) -> None:
    """Fail in one line when ``name`` is meant as a local model folder but is not one.

    transformers takes a missing folder for a hub id and fails with a chained
    ``Repo id must use alphanumeric chars`` traceback; an adapter folder fails on its missing
    ``config.json`` (or tokenizer).

    Args:
        name: the model folder or hub id.
        key: the config key that named it, for the message.
        adapter_ok: an adapter folder is what the loader takes (peft's ``from_pretrained``).

    Raises:
        ConfigError: ``name`` looks like a path that does not exist, or is a LoRA adapter
            where a model is expected.
    """
    folder = Path(os.path.expanduser(name))
    if not folder.exists():
        if looks_local(name):
            raise ConfigError(f"model folder '{name}' does not exist: set {key} to a model "
                              "folder (with config.json) or a hub id")
        return
    if not adapter_ok and (folder / "adapter_config.json").is_file() \
            and not (folder / "config.json").is_file():
        raise ConfigError(f"{name} is a LoRA adapter, not a model: set {key} to its base "
                          "model (the adapter's base_model_name_or_path), or merge them with "
                          "`xtuner convert merge BASE ADAPTER OUT` and use OUT")


def check_output_location(save_dir: str, inputs: dict[str, str | os.PathLike | None],
                          label: str = "SAVE_DIR") -> Path:
    """Refuse an output folder whose replacement would delete the user's files; its path.

    A converter writes a fresh sibling folder and then renames it over ``save_dir`` (with
    ``--overwrite`` the old one is deleted), so ``save_dir`` must be a folder of its own: not
    empty (``Path("")`` is the current folder), not the current folder or one above it, and
    neither an input nor a folder holding one. Call this before any work is done.

    Args:
        save_dir: the output folder as the user typed it.
        inputs: ``{what: path}`` of everything the command reads (``PTH``, ``BASE``, the
            config...); a path that does not exist locally (a hub id) or ``None`` is skipped.
        label: the output's name in messages (``SAVE_DIR``, ``DST``).

    Raises:
        UsageError: naming the input that would be lost.
    """
    if not str(save_dir).strip():
        raise UsageError(f"{label} is empty; name a new folder for the output, e.g. ./hf")
    out = Path(save_dir).expanduser().resolve()  # resolved: a symlink to "." is "."
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise UsageError(f"{label} '{save_dir}' is the current folder or one above it, which "
                         "the output would replace; name a new folder, e.g. ./hf")
    for what, value in inputs.items():
        if value is None or not Path(value).expanduser().exists():
            continue
        source = Path(value).expanduser().resolve()
        if out == source or out in source.parents:
            relation = "is" if out == source else "contains"
            raise UsageError(f"{label} '{save_dir}' {relation} {what} '{value}', which the "
                             "output would replace; write to another folder")
    return out


def max_shard_size(value: str) -> str:
    """``--max-shard-size``'s value, checked before any work (an argparse ``type``).

    Parsed by ``huggingface_hub``'s ``parse_size_to_int``, the parser ``save_pretrained``
    (transformers 5) itself uses, so a value accepted here is one it accepts: transformers'
    older ``convert_file_size_to_int`` also takes ``2GiB``, which ``save_pretrained`` refuses.

    Raises:
        argparse.ArgumentTypeError: not a positive size such as ``2GB`` or ``500MB``.
    """
    import argparse

    from huggingface_hub.serialization._base import parse_size_to_int

    try:
        size = parse_size_to_int(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise argparse.ArgumentTypeError(f"'{value}' is not a size; use a number with a unit "
                                         "of KB, MB, GB or TB, e.g. 2GB or 500MB")
    return value
