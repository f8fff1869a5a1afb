"""List and clean the processed-dataset cache (``xtuner preprocess --list-cache/--clean-cache``).

The cache (:mod:`.cache`) never evicts on its own: a folder is as large as the tokenized data,
and deleting one behind a running job's back would break it. These helpers let a user see what
is there (size, rows, last use, the data files) and remove the least recently used folders,
the ones unused for some days, or everything, plus the half-written ``*.tmp-PID`` folders of
runs that were killed.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cache import MANIFEST, cache_root

__all__ = ["CacheEntry", "list_cache", "clean_cache", "format_entries"]

_DAY = 86400.0


@dataclass
class CacheEntry:
    """One folder of the cache.

    Attributes:
        path: the folder.
        size: bytes on disk.
        last_used: when it was written or last reused (seconds since the epoch).
        rows: rows of the processed dataset (None for an unreadable or partial folder).
        sources: the data files it was made from, as recorded at the time.
        partial: a ``*.tmp-PID`` folder left by a run that was killed while writing.
    """

    path: Path
    size: int
    last_used: float
    rows: int | None = None
    sources: list[str] = field(default_factory=list)
    partial: bool = False


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _entry(folder: Path) -> CacheEntry | None:
    name, _, pid = folder.name.partition(".tmp-")
    if pid:
        if pid.isdigit() and _pid_alive(int(pid)):
            return None  # being written right now
        return CacheEntry(folder, _size(folder), folder.stat().st_mtime, partial=True)
    manifest = folder / MANIFEST
    try:
        data = json.loads(manifest.read_text())
        rows, sources = data.get("num_rows"), list(data.get("sources") or [])
    except (OSError, ValueError):
        rows, sources = None, []
    stamp = (manifest if manifest.exists() else folder).stat().st_mtime
    return CacheEntry(folder, _size(folder), stamp, rows, sources)


def list_cache(root: Path | None = None) -> list[CacheEntry]:
    """Every folder of the cache, least recently used first."""
    root = Path(root) if root is not None else cache_root()
    if not root.is_dir():
        return []
    entries = [_entry(p) for p in root.iterdir() if p.is_dir()]
    return sorted((e for e in entries if e is not None), key=lambda e: e.last_used)


def clean_cache(keep: int | None = None, older_than_days: float | None = None,
                root: Path | None = None, now: float | None = None) -> list[CacheEntry]:
    """Delete cache folders; partial folders of killed runs always go.

    Args:
        keep: keep this many of the most recently used folders, delete the others.
        older_than_days: delete folders not used for more than this many days.
        root: the cache folder (default :func:`~.cache.cache_root`).
        now: the current time (tests).

    With neither ``keep`` nor ``older_than_days`` every folder is deleted; with both, a
    folder goes when either rule says so.

    Returns:
        The deleted entries.
    """
    entries = list_cache(root)
    now = time.time() if now is None else now
    complete = [e for e in entries if not e.partial]
    doomed = [e for e in entries if e.partial]
    if keep is None and older_than_days is None:
        doomed += complete
    else:
        if keep is not None:
            doomed += complete[:max(len(complete) - keep, 0)]
        if older_than_days is not None:
            doomed += [e for e in complete if now - e.last_used > older_than_days * _DAY
                       and e not in doomed]
    for entry in doomed:
        shutil.rmtree(entry.path, ignore_errors=True)
    return doomed


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def format_entries(entries: list[CacheEntry], now: float | None = None) -> str:
    """A table of entries: size, rows, days since last use, folder and data files."""
    now = time.time() if now is None else now
    lines = [f"{'size':>9}  {'rows':>9}  {'last used':>10}  folder / data files"]
    for e in entries:
        days = (now - e.last_used) / _DAY
        rows = "partial" if e.partial else ("?" if e.rows is None else str(e.rows))
        lines.append(f"{_human(e.size):>9}  {rows:>9}  {days:>6.1f} d ago  {e.path}")
        lines += [f"{'':>38}{source}" for source in e.sources]
    total = sum(e.size for e in entries)
    lines.append(f"{len(entries)} folder{'s' * (len(entries) != 1)}, {_human(total)}")
    return "\n".join(lines)
