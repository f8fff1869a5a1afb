"""Processed-dataset cache and ``xtuner preprocess`` output.

A processed (tokenized, packed) dataset is stored under ``$XTUNER_CACHE_DIR`` (default
``~/.cache/xtuner/datasets``) in a folder named by a sha256 over everything that decides its
content: the bytes of the local data files, the pipeline settings, the source of xtuner's
dataset-processing modules (load, check, map, tokenize, pack), the whole source file of the map
fn and of every other callable the settings name (so a helper it calls counts too), the
template, the tokenizer's vocabulary and special tokens, and xtuner's version. A second run of
the same config, a resumed run and the other ranks of a multi-GPU run load it instead of
processing again.

Each folder is written under a temporary name and renamed into place, with a
``xtuner_manifest.json`` listing the sha256 and size of every file; a folder whose files do not
match its manifest is reported, deleted and rebuilt, never used. Reusing a folder touches its
manifest, so :mod:`.cache_admin` can list and evict the least recently used folders.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from mmengine import print_log

from xtuner.utils.errors import DataError

from .raw_check import check_raw_records  # noqa: F401 - its earlier home
from .sources import local_sources

__all__ = [
    "MANIFEST",
    "cache_root",
    "cache_disabled_by_env",
    "skip_bad_records_by_env",
    "dataset_cache_key",
    "save_processed",
    "load_processed",
    "load_processed_dataset",
    "local_sources",
    "pipeline_digests",
    "source_digests",
]

MANIFEST = "xtuner_manifest.json"
_FORMAT = 2  # bump when the folder layout changes (2: an empty dataset has one shard)

# Settings of process_hf_dataset that change the processed rows (map_num_proc does not).
_SETTINGS = ("do_dataset_tokenization", "max_length", "max_dataset_length", "split",
             "remove_unused_columns", "rename_maps", "shuffle_before_pack",
             "pack_to_max_length", "use_varlen_attn", "input_ids_with_output",
             "with_image_token", "seed", "skip_bad_records", "packing")


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def cache_root() -> Path:
    """``$XTUNER_CACHE_DIR`` or ``~/.cache/xtuner/datasets``."""
    return Path(os.environ.get("XTUNER_CACHE_DIR")
                or Path.home() / ".cache" / "xtuner" / "datasets")


def cache_disabled_by_env() -> bool:
    """``XTUNER_DATASET_CACHE=0`` turns the cache off."""
    return _env_flag("XTUNER_DATASET_CACHE") is False


def skip_bad_records_by_env() -> bool:
    """``XTUNER_SKIP_BAD_RECORDS=1`` drops bad records instead of failing."""
    return bool(_env_flag("XTUNER_SKIP_BAD_RECORDS"))


# --------------------------------------------------------------------------- key


def _sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# xtuner's own modules whose code shapes the processed rows. Their source is part of the key,
# so a change to the tokenizing or packing code (say) is never served stale rows.
_PIPELINE_MODULES = (
    "xtuner.dataset.cache", "xtuner.dataset.formats", "xtuner.dataset.guarded_map",
    "xtuner.dataset.huggingface", "xtuner.dataset.packing", "xtuner.dataset.problems",
    "xtuner.dataset.raw_check", "xtuner.dataset.record_checks", "xtuner.dataset.sources",
    "xtuner.dataset.specs", "xtuner.dataset.tokenize",
    "xtuner.dataset.map_fns.template_map_fn", "xtuner.utils.constants",
)


def _file_digest(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    return _sha256_file(path)


def pipeline_digests() -> dict[str, str | None]:
    """sha256 of the source file of each module of :data:`_PIPELINE_MODULES`."""
    import importlib

    return {name: _file_digest(getattr(importlib.import_module(name), "__file__", None))
            for name in _PIPELINE_MODULES}


def _source_file(obj: Any) -> str | None:
    """The file that defines ``obj`` (its whole module, helpers included), if any."""
    obj = inspect.unwrap(obj)
    try:
        return inspect.getsourcefile(obj) or inspect.getfile(obj)
    except TypeError:  # a builtin, or an instance of a class defined in C
        try:
            return inspect.getsourcefile(type(obj))
        except TypeError:
            return None


def _identity(obj: Any) -> Any:
    """A stable, JSON-able description of a config value: callables by name and by the
    content of the file that defines them."""
    if isinstance(obj, functools.partial):
        return {"partial": _identity(obj.func), "args": _identity(list(obj.args)),
                "keywords": _identity(obj.keywords)}
    if isinstance(obj, dict):
        return {str(k): _identity(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_identity(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if callable(obj):
        name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
        digest = _file_digest(_source_file(obj))
        if digest is None:
            # Defined where no file holds it (typed into a REPL): its own source, if any.
            try:
                source = inspect.getsource(obj)
            except (OSError, TypeError):
                source = ""
            digest = hashlib.sha256(source.encode()).hexdigest()
        return {"callable": name, "module_source": digest}
    return repr(obj)


def _tokenizer_identity(tokenizer) -> dict | None:
    if tokenizer is None:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = (backend.to_str() if backend is not None
             else json.dumps(tokenizer.get_vocab(), sort_keys=True))
    return {"class": type(tokenizer).__name__,
            "vocab": hashlib.sha256(vocab.encode()).hexdigest(),
            "special": _identity(dict(tokenizer.special_tokens_map)),
            "bos": getattr(tokenizer, "bos_token_id", None),
            "eos": getattr(tokenizer, "eos_token_id", None)}


def source_digests(sources) -> list:
    """Per source: its kind, split, field and the sha256 of each of its files."""
    out = []
    for source in sources:
        path = Path(source.path)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out.append([source.kind, source.split, source.field,
                    [_sha256_file(f) for f in files]])
    return out


def dataset_cache_key(kwargs: dict, sources, tokenizer) -> tuple[str, dict]:
    """The cache key of a ``process_hf_dataset`` call and the material it was made from.

    Args:
        kwargs: the call's arguments (``tokenizer`` already built and passed separately).
        sources: the local data sources (:func:`local_sources`).
        tokenizer: the built tokenizer or None.
    """
    from xtuner.version import __version__

    from .huggingface import resolve_map_fn

    dataset_cfg = {k: v for k, v in kwargs["dataset"].items()
                   if k not in ("path", "data_files", "data_dir")}
    material = {
        "format": _FORMAT,
        "xtuner": __version__,
        "pipeline": pipeline_digests(),
        "data": source_digests(sources),
        "loader": _identity(dataset_cfg),
        "settings": _identity({k: kwargs.get(k) for k in _SETTINGS}),
        "map_fn": _identity(resolve_map_fn(kwargs.get("dataset_map_fn"))),
        "template": _identity(kwargs.get("template_map_fn")),
        "tokenizer": _tokenizer_identity(tokenizer),
    }
    text = json.dumps(material, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest(), material


# --------------------------------------------------------------------------- store / load


def _file_table(folder: Path) -> dict[str, dict]:
    return {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _sha256_file(p)}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def save_processed(dataset, folder: str | Path, material: dict | None = None,
                   sources: list[str] | None = None, warnings: list[str] | None = None) -> Path:
    """Write a processed dataset and its manifest to ``folder`` atomically.

    ``sources`` (the data files it was made from) are recorded for ``--list-cache`` only; they
    are not part of the key. ``warnings`` (the lines logged while processing) are logged
    again by each run that reuses the folder.

    The data goes to ``<folder>.tmp-<pid>``, the manifest is written last, and the folder is
    renamed into place, so a killed run never leaves a folder that looks complete.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # `datasets` writes an empty dataset as zero shards, which its own load_from_disk cannot
    # read back (IndexError); one empty shard round-trips.
    dataset.save_to_disk(str(tmp), num_shards=1 if len(dataset) == 0 else None)
    manifest = {"format": _FORMAT, "num_rows": len(dataset), "columns": dataset.column_names,
                "key_material": material or {}, "sources": sources or [],
                "warnings": warnings or [],
                "files": _file_table(tmp)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=repr))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def _verify(folder: Path, check_hashes: bool = True) -> str | None:
    """Why ``folder`` cannot be used, or None when every file matches its manifest."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return f"{MANIFEST} is missing"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} cannot be read ({exc})"
    if manifest.get("format") != _FORMAT:
        return f"it was written in format {manifest.get('format')}, not {_FORMAT}"
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry["size"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {entry['size']}"
        if check_hashes and _sha256_file(path) != entry["sha256"]:
            return f"{name} does not match its sha256 in the manifest"
    return None


def _open(folder: Path):
    from datasets import load_from_disk

    dataset = load_from_disk(str(folder))
    if "length" in dataset.column_names:
        # LengthGroupedSampler reads `dataset.length`; attributes do not survive save_to_disk.
        dataset.length = dataset["length"]
    return dataset


def load_processed(folder: str | Path, check_hashes: bool = True):
    """Load a cached dataset folder if it matches its manifest.

    Returns:
        ``(dataset, None)`` or ``(None, reason)``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None, "it does not exist"
    reason = _verify(folder, check_hashes)
    if reason is not None:
        return None, reason
    return _open(folder), None


def load_processed_dataset(path: str):
    """Load a dataset written by ``xtuner preprocess`` (use as ``train_dataloader.dataset``).

    ``dict(type=xtuner.dataset.load_processed_dataset, path=DIR)``. Every file is checked
    against the manifest first.

    Raises:
        DataError: ``path`` is missing, or its files do not match the manifest.
    """
    dataset, reason = load_processed(path)
    if dataset is None:
        raise DataError(f"processed dataset {path}: {reason}; run `xtuner preprocess CONFIG "
                        f"--save-dir {path}` again to rewrite it")
    print_log(f"loaded processed dataset from {path} ({len(dataset)} rows)", logger="current")
    return dataset


def cached_or_none(key: str, check_hashes: bool = True):
    """The cached dataset for ``key``, or None (a broken folder is logged and deleted)."""
    folder = cache_root() / key
    if not folder.exists():
        return None
    dataset, reason = load_processed(folder, check_hashes)
    if dataset is None:
        print_log(f"the dataset cache {folder} is corrupted or stale ({reason}); rebuilding it",
                  logger="current", level=logging.WARNING)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    # The manifest's mtime is the folder's "last used" time for `--clean-cache --keep N`.
    os.utime(folder / MANIFEST)
    print_log(f"reused processed dataset from {folder} ({len(dataset)} rows)",
              logger="current")
    # What the data check warned about when the folder was made holds for this run too.
    for line in json.loads((folder / MANIFEST).read_text()).get("warnings", []):
        print_log(f"{line} (found when the cached data was processed)", logger="current",
                  level=logging.WARNING)
    return dataset
