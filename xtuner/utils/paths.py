"""Where the shipped config catalog and tool scripts live, and name lookup in them.

After ``pip install .`` the catalog is ``xtuner/configs`` and the tools ``xtuner/tools``
inside the package. With an editable install (or a plain checkout on ``PYTHONPATH``) those
copies do not exist, so the repository's top-level ``configs/`` and ``tools/`` are used.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError, did_you_mean

__all__ = [
    "package_dir",
    "configs_dir",
    "tools_dir",
    "config_catalog",
    "resolve_config",
    "resolve_deepspeed_config",
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
