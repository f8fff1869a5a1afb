"""Helpers to build a Hugging Face model from an xtuner config dict."""
from __future__ import annotations

import contextlib
import copy
import logging
import os

import torch
from mmengine import print_log

from xtuner.registry import BUILDER
from xtuner.utils.errors import ConfigError

from .quantization import HALF_DTYPES, keep_4bit_layers_trainable

__all__ = [
    "as_torch_dtype",
    "build_from_cfg",
    "normalize_dtype",
    "find_all_linear_names",
    "is_quantized",
    "apply_device_fallbacks",
    "unwrap_model",
    "pretrained_errors",
]

_DTYPES = {
    "torch.float16": torch.float16, "float16": torch.float16, "fp16": torch.float16,
    "torch.bfloat16": torch.bfloat16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "torch.float32": torch.float32, "float32": torch.float32, "fp32": torch.float32,
}
_DTYPE_KEYS = ("dtype", "torch_dtype", "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage")


def normalize_dtype(value):
    """Turn ``'torch.float16'`` (how a dumped config stores dtypes) back into the dtype."""
    if isinstance(value, str) and value in _DTYPES:
        return _DTYPES[value]
    return value


def as_torch_dtype(value) -> torch.dtype:
    """A dtype from a dtype, ``'bfloat16'`` or ``'torch.bfloat16'``."""
    if isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a torch dtype: {value!r}")
    return dtype


def _convert(obj):
    """Recursively build nested ``dict(type=...)`` values and restore dtype strings."""
    if isinstance(obj, dict):
        obj = {k: _convert(v) for k, v in obj.items()}
        for key in _DTYPE_KEYS:
            if key in obj:
                obj[key] = normalize_dtype(obj[key])
        if "type" in obj:
            return BUILDER.build(obj)
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(v) for v in obj)
    return obj


def apply_device_fallbacks(llm_cfg: dict) -> dict:
    """Adapt a model config dict to the machine it is built on.

    * transformers 5 renamed ``torch_dtype`` to ``dtype``, and loads a checkpoint in its stored
      dtype (usually bf16) when none is given, where transformers 4 (XTuner v0) loaded float32.
      Without a ``dtype`` the weights load in float32 as in v0: configs for full fine-tuning
      rely on it for fp32 master weights under ``AmpOptimWrapper``.
    * Without CUDA, fp16/bf16 requests become fp32 (one warning): a catalog config can then be
      smoke-tested on a laptop.
    * ``device_map='auto'`` would shard the model over all GPUs of every rank; in a
      distributed run each rank loads onto its own GPU, and on the CPU the map is dropped.
    """
    cfg = copy.copy(llm_cfg)
    if "torch_dtype" in cfg:
        cfg.setdefault("dtype", cfg.pop("torch_dtype"))
    if "dtype" in cfg:
        cfg["dtype"] = normalize_dtype(cfg["dtype"])
    elif str(getattr(cfg.get("type"), "__name__", cfg.get("type"))).endswith("from_pretrained"):
        cfg["dtype"] = torch.float32
    cfg.pop("low_cpu_mem_usage", None)  # transformers 5 always loads lazily
    cuda = torch.cuda.is_available()
    if not cuda:
        demoted = []
        if cfg.get("dtype") in HALF_DTYPES:
            demoted.append(f"dtype={cfg['dtype']}")
            cfg["dtype"] = torch.float32
        quant = cfg.get("quantization_config")
        if isinstance(quant, dict):
            quant = dict(quant)
            for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
                if normalize_dtype(quant.get(key)) in HALF_DTYPES:
                    demoted.append(f"{key}={quant[key]}")
                    quant[key] = torch.float32
            cfg["quantization_config"] = quant
        if demoted:
            print_log(f"No CUDA device: using float32 instead of {', '.join(demoted)}",
                      logger="current", level=logging.WARNING)
        cfg.pop("device_map", None)
    elif "device_map" in cfg and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cfg["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return cfg


def _is_from_pretrained(type_obj) -> bool:
    """``type_obj`` (a callable, dotted name or lazy object) is a ``from_pretrained``."""
    return str(getattr(type_obj, "__name__", type_obj)).endswith("from_pretrained")


def _hub_failure(exc: BaseException):
    """The huggingface_hub error in ``exc``'s chain that says the hub could not provide the
    files (offline and not cached, unknown or gated repo), or None."""
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled,
                            RepositoryNotFoundError)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def pretrained_errors(cfg):
    """Turn the mistakes of a ``dict(type=....from_pretrained, pretrained_model_name_or_path=
    NAME)`` into one line: a local folder that does not exist or is an adapter (checked before
    loading), a hub id that is not cached while the hub cannot be reached, or that the hub
    does not know. Other configs and other errors pass through unchanged.

    Raises:
        ConfigError: as above.
    """
    name = cfg.get("pretrained_model_name_or_path") if isinstance(cfg, dict) else None
    if not isinstance(name, str) or not _is_from_pretrained(cfg.get("type")):
        yield
        return
    from huggingface_hub.errors import RepositoryNotFoundError

    from xtuner.utils.paths import check_model_folder

    builder = cfg.get("type")
    check_model_folder(name, adapter_ok="Peft" in str(getattr(builder, "__qualname__", builder)))
    try:
        yield
    except OSError as exc:  # transformers wraps the hub's errors in a plain OSError
        cause = _hub_failure(exc)
        if cause is None:
            raise
        if isinstance(cause, RepositoryNotFoundError):
            raise ConfigError(f"'{name}' is not a model on the Hugging Face hub (or it is "
                              "gated and needs `hf auth login`): check "
                              "pretrained_model_name_or_path") from exc
        raise ConfigError(f"'{name}' is not in the Hugging Face cache and the hub cannot be "
                          "reached (offline): download it first or point "
                          "pretrained_model_name_or_path at a local folder") from exc


def unwrap_model(model):
    """The model inside mmengine's DDP/DeepSpeed wrappers (the model itself when unwrapped)."""
    from mmengine.model import is_model_wrapper

    while is_model_wrapper(model):
        model = model.module
    return model


def build_from_cfg(cfg):
    """Build a model/tokenizer/config from a config dict, or return an already built object.

    A model built here is trained, or checked against what training computes (the parity
    check of ``xtuner convert``): its bitsandbytes 4-bit layers are kept off the CPU
    inference layout (see :func:`xtuner.model.quantization.keep_4bit_layers_trainable`).
    """
    if not isinstance(cfg, dict):
        return cfg
    built = _convert(dict(cfg))
    if isinstance(built, torch.nn.Module):
        keep_4bit_layers_trainable(built)
    return built


def is_quantized(model) -> bool:
    """True for a bitsandbytes 4-bit or 8-bit model."""
    return bool(getattr(model, "is_loaded_in_4bit", False)
                or getattr(model, "is_loaded_in_8bit", False)
                or getattr(model, "quantization_method", None) == "bitsandbytes"
                or getattr(getattr(model, "config", None), "quantization_config", None))


def find_all_linear_names(model) -> list[str]:
    """Names of the linear layers LoRA should adapt: every linear layer except the output head.

    bitsandbytes' ``Linear4bit``/``Linear8bitLt`` count as linear layers.
    """
    linear_types: tuple = (torch.nn.Linear,)
    try:
        import bitsandbytes as bnb

        linear_types += (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except ImportError:
        pass
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, linear_types) and module is not head:
            names.add(name.split(".")[-1])
    names -= {"lm_head", "output_layer", "output"}
    return sorted(names)
