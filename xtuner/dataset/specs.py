"""Which datasets a config trains on, as the data checker needs them (:class:`DatasetSpec`).

Each ``process_hf_dataset`` of a config (every member of a ``ConcatDataset``) becomes a spec:
its local sources, the built map fn, template fn and tokenizer, and the settings that decide
truncation and packing.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xtuner.engine.config import resolve_type
from xtuner.utils.errors import ConfigError

from .formats import DATA_FORMATS, DataFormat
from .sources import DataSource, callable_name, resolve_sources

__all__ = ["DatasetSpec", "dataset_specs", "declared_format", "template_name_of",
           "train_dataset_cfg"]


def declared_format(map_fn: Callable | None) -> DataFormat:
    """The format a ``dataset_map_fn`` declares (:data:`~.formats.DATA_FORMATS`), which both
    ``xtuner check-custom-dataset`` and training check every raw record against.

    A map fn of ``DATASET_FORMAT_MAPPING`` (or an xtuner map fn of a listed name) gets its
    listed fields and layout. Any other map fn declares nothing: its format has no required
    field, since which keys a function really needs cannot be read off its source (a key read
    under an ``if`` is optional). Such records are checked only for what is certain: each is
    a JSON object, the map fn does not raise on it and returns a ``conversation``; an empty
    one is a warning (the function may drop records on purpose).
    """
    if map_fn is None:
        return DATA_FORMATS["conversation"]
    from .map_fns.dataset_map_fns import DATASET_FORMAT_MAPPING

    for name, fn in DATASET_FORMAT_MAPPING.items():
        if fn is map_fn and name in DATA_FORMATS:
            return DATA_FORMATS[name]
    name = getattr(map_fn, "__name__", None) or type(map_fn).__name__
    if (getattr(map_fn, "__module__", None) or "").startswith("xtuner."):
        for fmt in DATA_FORMATS.values():
            if fmt.map_fn == name:
                return fmt
    return DataFormat(name, name, f"{name} (no declared schema)", {}, fields={}, may_drop=True)


@dataclass
class DatasetSpec:
    """One ``process_hf_dataset`` of a config, as the checker needs it."""

    name: str
    sources: list[DataSource]
    map_fn: Callable | None
    template_fn: Callable | None
    template_name: str | None
    tokenizer: Any
    max_length: int | None
    pack: bool
    input_ids_with_output: bool
    with_image_token: bool
    max_dataset_length: int | None
    image_folder: str | None = None  # LLaVADataset: images are checked under this folder
    image_tokens: int | None = None  # LLaVADataset: features per image in a row
    preference: dict | None = None  # build_preference_dataset: its pair settings
    media: Any = None  # MediaJsonlDataset: its built tokenize function

    @property
    def fmt(self) -> DataFormat:
        return declared_format(self.map_fn)

    @property
    def loose_keys(self) -> tuple[str, ...]:
        """Keys whose JSON type may differ between records: LLaVADataset turns every ``id``
        into a string and every ``image`` into a list before ``datasets`` sees them."""
        return ("id", "image") if self.image_folder is not None else ()


def _template_name(template) -> str | None:
    from xtuner.utils.templates import PROMPT_TEMPLATE

    if isinstance(template, str):
        return template.rsplit(".", 1)[-1]
    for name, value in PROMPT_TEMPLATE.items():
        if value == template:
            return name
    return None


def template_name_of(template_map_fn) -> str | None:
    """The ``PROMPT_TEMPLATE`` name a ``template_map_fn`` (config dict or built ``partial``)
    applies, or None for a template of the user's own."""
    if isinstance(template_map_fn, dict):
        return _template_name(template_map_fn.get("template"))
    return _template_name(getattr(template_map_fn, "keywords", {}).get("template"))


def _build_tokenizer(tokenizer_cfg, cache: dict):
    from .huggingface import build

    key = repr(tokenizer_cfg)
    if key not in cache:
        try:
            cache[key] = build(tokenizer_cfg)
        except (OSError, ValueError) as exc:
            name = (tokenizer_cfg.get("pretrained_model_name_or_path")
                    if isinstance(tokenizer_cfg, dict) else tokenizer_cfg)
            raise ConfigError(f"cannot load the tokenizer {name!r}: {exc}") from exc
    return cache[key]


def _spec(name: str, ds_cfg, tokenizers: dict) -> DatasetSpec:
    from .huggingface import build, process_hf_dataset, resolve_map_fn

    args = {**_defaults(process_hf_dataset), **{k: v for k, v in ds_cfg.items() if k != "type"}}
    if not args["do_dataset_tokenization"]:
        raise ConfigError(f"{name} has do_dataset_tokenization=False (already tokenized); "
                          "check-custom-dataset checks raw records")
    if args["tokenizer"] is None:
        raise ConfigError(f"{name} has no tokenizer")
    sources = resolve_sources(args["dataset"], args["split"], f"{name}.dataset")
    template_cfg = args["template_map_fn"]
    template_name = template_name_of(template_cfg)
    template_fn = build(template_cfg) if template_cfg is not None else None
    return DatasetSpec(
        name=name, sources=sources, map_fn=resolve_map_fn(args["dataset_map_fn"]),
        template_fn=template_fn, template_name=template_name,
        tokenizer=_build_tokenizer(args["tokenizer"], tokenizers),
        max_length=args["max_length"], pack=bool(args["pack_to_max_length"]),
        input_ids_with_output=bool(args["input_ids_with_output"]),
        with_image_token=bool(args["with_image_token"]),
        max_dataset_length=args["max_dataset_length"])


def _value(value):
    """A config value as training sees it: a constant imported into a lazy-import config (a
    ``LazyAttr``, e.g. a demo's data path) is built."""
    from mmengine.config.lazy import LazyAttr, LazyObject

    if isinstance(value, (LazyObject, LazyAttr)):
        return value.build()
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    return value


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _llava_spec(name: str, ds_cfg, tokenizers: dict) -> DatasetSpec:
    from .huggingface import build, resolve_map_fn
    from .llava import LLaVADataset
    from .sources import data_file_source

    args = {**_defaults(LLaVADataset.__init__),
            **{k: _value(v) for k, v in ds_cfg.items() if k != "type"}}
    if args.get("offline_processed_text_folder") is not None:
        raise ConfigError(f"{name} reads offline_processed_text_folder (already tokenized); "
                          "check-custom-dataset checks the raw LLaVA records: set data_path")
    if not args.get("data_path") or args.get("tokenizer") is None:
        raise ConfigError(f"{name} (LLaVADataset) needs data_path and tokenizer")
    if args.get("image_folder") is None:
        raise ConfigError(f"{name} (LLaVADataset) has no image_folder")
    template_cfg = args["template_map_fn"]
    return DatasetSpec(
        name=name, sources=[data_file_source(str(args["data_path"]), f"{name}.data_path")],
        map_fn=resolve_map_fn(args["dataset_map_fn"]),
        template_fn=build(template_cfg) if template_cfg is not None else None,
        template_name=template_name_of(template_cfg),
        tokenizer=_build_tokenizer(args["tokenizer"], tokenizers),
        max_length=args["max_length"], pack=bool(args["pack_to_max_length"]),
        input_ids_with_output=True, with_image_token=True,
        max_dataset_length=args["max_dataset_length"],
        image_folder=str(args["image_folder"]), image_tokens=args["image_tokens"])


def _preference_sources(dataset_cfg, where: str) -> list[DataSource]:
    from .sources import data_file_source

    if not isinstance(dataset_cfg, dict) or "type" not in dataset_cfg:
        raise ConfigError(f"{where} is {type(dataset_cfg).__name__}; check-custom-dataset "
                          "needs a config dict such as dict(type=load_jsonl_dataset, "
                          "data_files=[...])")
    if callable_name(resolve_type(dataset_cfg["type"])) != "load_jsonl_dataset":
        return resolve_sources(dataset_cfg, "train", where)
    from pathlib import Path

    files, folder = _value(dataset_cfg.get("data_files")), _value(dataset_cfg.get("data_dir"))
    if (files is None) == (folder is None):
        raise ConfigError(f"{where}: load_jsonl_dataset needs exactly one of data_files and "
                          "data_dir")
    if folder is not None:
        suffix = dataset_cfg.get("suffix")
        if not Path(folder).is_dir():
            raise ConfigError(f"{where}: data_dir {folder} is not a folder")
        files = sorted(str(p) for p in Path(folder).iterdir()
                       if p.is_file() and (suffix is None or p.name.endswith(suffix)))
    elif not isinstance(files, (list, tuple)):
        files = [files]
    # load_jsonl_dataset reads every file line by line, whatever its suffix.
    return [data_file_source(str(f), f"{where}.data_files", kind="jsonl") for f in files]


def _preference_spec(name: str, ds_cfg, tokenizers: dict) -> DatasetSpec:
    from .huggingface import resolve_map_fn
    from .preference_dataset import build_preference_dataset

    args = {**_defaults(build_preference_dataset),
            **{k: v for k, v in ds_cfg.items() if k != "type"}}
    for key in ("dataset", "tokenizer", "max_length"):
        if args.get(key) is None:
            raise ConfigError(f"{name} (build_preference_dataset) has no {key}")
    pack = (args["use_varlen_attn"] if args["pack_to_max_length"] is None
            else bool(args["pack_to_max_length"]))
    return DatasetSpec(
        name=name, sources=_preference_sources(args["dataset"], f"{name}.dataset"),
        map_fn=resolve_map_fn(args["dataset_map_fn"]), template_fn=None, template_name=None,
        tokenizer=_build_tokenizer(args["tokenizer"], tokenizers),
        max_length=args["max_length"], pack=bool(pack), input_ids_with_output=True,
        with_image_token=False, max_dataset_length=None,
        preference=dict(is_reward=bool(args["is_reward"]),
                        reward_token_id=args["reward_token_id"],
                        max_packed_length=args["max_packed_length"],
                        from_jsonl=callable_name(resolve_type(args["dataset"]["type"]))
                        == "load_jsonl_dataset"))


def _lazy_free(value):
    """``value`` with every lazy-import constant of the config built (nested dicts too)."""
    if isinstance(value, dict):
        return type(value)((k, _lazy_free(v)) for k, v in value.items())
    return _value(value)


def _media_spec(name: str, ds_cfg, tokenizers: dict) -> DatasetSpec:
    from xtuner.model.utils import build_from_cfg

    from .media import MediaJsonlDataset
    from .sources import data_file_source

    args = {**_defaults(MediaJsonlDataset.__init__),
            **{k: _lazy_free(v) for k, v in ds_cfg.items() if k != "type"}}
    if not args.get("data_path") or args.get("tokenize_fn") is None:
        raise ConfigError(f"{name} (MediaJsonlDataset) needs data_path and tokenize_fn")
    paths = args["data_path"]
    paths = [paths] if isinstance(paths, str) else list(paths)
    # The dataset reads every file line by line, whatever its suffix.
    sources = [data_file_source(str(p), f"{name}.data_path", kind="jsonl") for p in paths]
    tokenize_fn = build_from_cfg(args["tokenize_fn"])
    return DatasetSpec(
        name=name, sources=sources, map_fn=None, template_fn=None, template_name=None,
        tokenizer=tokenize_fn.tokenizer, max_length=tokenize_fn.max_length,
        pack=bool(args["pack_to_max_length"]), input_ids_with_output=True,
        with_image_token=False, max_dataset_length=None, media=tokenize_fn)


_SPEC_BUILDERS = {"process_hf_dataset": _spec, "LLaVADataset": _llava_spec,
                  "build_preference_dataset": _preference_spec,
                  "MediaJsonlDataset": _media_spec}


def train_dataset_cfg(cfg, purpose: str) -> tuple[dict, str]:
    """``(dataset config, its key)``: ``train_dataloader.dataset``, or ``train_dataset`` in a
    ``framework='huggingface'`` config.

    Raises:
        ConfigError: there is none (the message says there is nothing to ``purpose``).
    """
    if str(cfg.get("framework", "mmengine")).lower() == "huggingface":
        root, name = cfg.get("train_dataset"), "train_dataset"
    else:
        loader = cfg.get("train_dataloader")
        root = loader.get("dataset") if isinstance(loader, dict) else None
        name = "train_dataloader.dataset"
    if not isinstance(root, dict) or "type" not in root:
        raise ConfigError(f"the config has no {name} to {purpose}")
    return root, name


_CHECKED = ("process_hf_dataset, LLaVADataset, build_preference_dataset or "
            "MediaJsonlDataset")


def dataset_specs(cfg) -> tuple[list[DatasetSpec], list[str]]:
    """The training datasets of a config (each member of a ``ConcatDataset``), plus notes
    about members that cannot be checked.

    Raises:
        ConfigError: the config has no training dataset this checker understands.
    """
    root, root_name = train_dataset_cfg(cfg, "check")
    members = [(root_name, root)]
    if callable_name(resolve_type(root["type"])) == "ConcatDataset":
        members = [(f"{root_name}.datasets[{i}]", d)
                   for i, d in enumerate(root.get("datasets") or [])]
    specs, notes, tokenizers = [], [], {}
    for name, ds_cfg in members:
        kind = callable_name(resolve_type(ds_cfg.get("type"))) if isinstance(ds_cfg, dict) else None
        if kind not in _SPEC_BUILDERS:
            notes.append(f"{name} ({kind or type(ds_cfg).__name__}) is not a "
                         f"{_CHECKED} and is not checked")
            continue
        specs.append(_SPEC_BUILDERS[kind](name, ds_cfg, tokenizers))
    if not specs:
        raise ConfigError(f"{root_name} holds no dataset check-custom-dataset can check; it "
                          f"checks {_CHECKED} datasets")
    return specs, notes

