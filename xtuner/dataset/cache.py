"""Processed-dataset cache, ``xtuner preprocess`` output, and early checks of raw records.

A processed (tokenized, packed) dataset is stored under ``$XTUNER_CACHE_DIR`` (default
``~/.cache/xtuner/datasets``) in a folder named by a sha256 over everything that decides its
content: the bytes of the local data files, the pipeline settings, the map fn's source, the
template, the tokenizer's vocabulary and special tokens, and xtuner's version. A second run of
the same config, a resumed run and the other ranks of a multi-GPU run load it instead of
processing again.

Each folder is written under a temporary name and renamed into place, with a
``xtuner_manifest.json`` listing the sha256 and size of every file; a folder whose files do not
match its manifest is reported, deleted and rebuilt, never used.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from mmengine import print_log

from xtuner.utils.errors import DataError, XTunerError

__all__ = [
    "MANIFEST",
    "cache_root",
    "cache_disabled_by_env",
    "skip_bad_records_by_env",
    "dataset_cache_key",
    "save_processed",
    "load_processed",
    "load_processed_dataset",
    "check_raw_records",
]

MANIFEST = "xtuner_manifest.json"
_FORMAT = 1  # bump when the folder layout changes
_SHOWN = 5  # bad records quoted in a DataError

# Settings of process_hf_dataset that change the processed rows (map_num_proc does not).
_SETTINGS = ("do_dataset_tokenization", "max_length", "max_dataset_length", "split",
             "remove_unused_columns", "rename_maps", "shuffle_before_pack",
             "pack_to_max_length", "use_varlen_attn", "input_ids_with_output",
             "with_image_token", "seed", "skip_bad_records")


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


def _identity(obj: Any) -> Any:
    """A stable, JSON-able description of a config value: callables by name and source."""
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
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            source = ""
        return {"callable": name, "source": hashlib.sha256(source.encode()).hexdigest()}
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


def local_sources(dataset_cfg, split):
    """The local files (or ``save_to_disk`` folders) a dataset config reads.

    Returns:
        ``(sources, None)``, or ``(None, reason)`` when the data is not local files.
    """
    from .validation import resolve_sources

    if not isinstance(dataset_cfg, dict) or "type" not in dataset_cfg:
        return None, f"the dataset is a {type(dataset_cfg).__name__} object, not local files"
    try:
        return resolve_sources(dataset_cfg, split, "dataset"), None
    except XTunerError as exc:
        return None, str(exc)


def _source_digests(sources) -> list:
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
        "data": _source_digests(sources),
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


def save_processed(dataset, folder: str | Path, material: dict | None = None) -> Path:
    """Write a processed dataset and its manifest to ``folder`` atomically.

    The data goes to ``<folder>.tmp-<pid>``, the manifest is written last, and the folder is
    renamed into place, so a killed run never leaves a folder that looks complete.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    manifest = {"format": _FORMAT, "num_rows": len(dataset), "columns": dataset.column_names,
                "key_material": material or {}, "files": _file_table(tmp)}
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
    print_log(f"reused processed dataset from {folder} ({len(dataset)} rows)",
              logger="current")
    return dataset


# --------------------------------------------------------------------------- raw records


def check_raw_records(dataset_cfg, split, map_fn, skip: bool):
    """Check the structure of every record of local JSON / JSON Lines data before loading.

    Only the cheap per-record checks of :mod:`.validation` run (valid JSON, the keys and
    types the map fn expects); ``xtuner check-custom-dataset`` runs the full pipeline.

    Returns:
        ``dataset_cfg`` itself when every record is fine (or the data is not local JSON), or,
        with ``skip``, a config loading cleaned JSON Lines copies without the bad records.

    Raises:
        DataError: a record is bad and ``skip`` is off; the message lists ``file:line``
            problems, the total, and how to check or skip.
    """
    from .formats import format_for_map_fn
    from .validation import EMPTY, ERROR, _parse, iter_source, validate_record

    sources, _ = local_sources(dataset_cfg, split)
    if not sources or any(s.kind not in ("json", "jsonl") for s in sources):
        return dataset_cfg
    fmt = format_for_map_fn(map_fn)
    bad: list[tuple[str, Any]] = []
    kept: list[list[Any]] = []
    for source in sources:
        records = []
        for loc, tag, payload in iter_source(source):
            record, problem = _parse(tag, payload)
            problems = [problem] if problem else validate_record(record, fmt)
            # An empty conversation is dropped by the pipeline itself, as in v0.
            error = next((p for p in problems if p.severity == ERROR and p.kind != EMPTY),
                         None)
            if error is None:
                records.append(record)
            else:
                bad.append((loc, error))
        kept.append(records)
    if not bad:
        return dataset_cfg
    if not skip:
        lines = "\n".join(f"  {loc}: {p}" for loc, p in bad[:_SHOWN])
        more = f"\n  ... and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise DataError(f"{len(bad)} bad record{'s' * (len(bad) != 1)} in the training data:\n"
                        f"{lines}{more}\nRun `xtuner check-custom-dataset CONFIG` for a full "
                        "report, fix the records, or skip them with XTUNER_SKIP_BAD_RECORDS=1 "
                        "(process_hf_dataset(skip_bad_records=True))")
    reasons = Counter(p.kind for _, p in bad)
    print_log(f"skipped {len(bad)} bad records (" + ", ".join(
        f"{kind}: {n}" for kind, n in reasons.most_common()) + f"); first: {bad[0][0]}: "
        f"{bad[0][1]}", logger="current", level=logging.WARNING)
    import tempfile

    from datasets import load_dataset

    out_dir = Path(tempfile.mkdtemp(prefix="xtuner-clean-"))
    files = []
    for i, records in enumerate(kept):
        path = out_dir / f"part-{i}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        files.append(str(path))
    return dict(type=load_dataset, path="json", data_files={split or "train": files})
