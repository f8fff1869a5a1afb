"""Load the model, tokenizer and adapter for ``xtuner chat``, with one-line errors."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from xtuner.model.utils import normalize_dtype
from xtuner.utils.errors import CheckpointError, SetupError, UsageError

__all__ = ["check_adapter_dir", "check_model_path", "load_model", "resolve_dtype"]


def _warn(message: str) -> None:
    print(f"xtuner chat: warning: {message}", file=sys.stderr, flush=True)


def resolve_dtype(name: str, cuda: bool | None = None, model_path: str | None = None):
    """``--torch-dtype`` as a torch dtype; fp16 without CUDA becomes fp32 (one warning).

    ``auto`` is the dtype the checkpoint stores (its ``config.json``; fp16 when it names none),
    as ``xtuner convert merge`` uses; for a hub id transformers reads the config itself.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if name == "auto":
        local = model_path is not None and Path(model_path).expanduser().is_dir()
        if not local:
            return "auto"
        from xtuner.model.export import checkpoint_dtype

        dtype = checkpoint_dtype(model_path)
    else:
        dtype = normalize_dtype(name)
    if dtype == torch.float16 and not cuda:
        _warn("no CUDA device: loading in fp32 instead of fp16 (pass --torch-dtype to choose)")
        return torch.float32
    return dtype


def _looks_local(path: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else can only be a local path."""
    return (path.startswith((".", "/", "~")) or os.sep != "/" and os.sep in path
            or path.count("/") > 1)


def check_model_path(path: str) -> None:
    """Fail in one line when ``path`` is meant as a local model folder but is not one."""
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise UsageError(f"model '{path}' is a file; expected a Hugging Face model folder "
                             "(with config.json) or a hub id")
        if not (local / "config.json").is_file():
            raise UsageError(f"model folder '{path}' has no config.json; point at a folder "
                             "written by save_pretrained (or `xtuner convert merge`)")
    elif _looks_local(path):
        raise UsageError(f"model folder '{path}' does not exist")


def check_adapter_dir(path: str) -> None:
    """An adapter must be a folder holding ``adapter_config.json`` (what peft saves)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"adapter folder '{path}' does not exist; pass the folder "
                              "`xtuner convert pth_to_hf` wrote")
    if not (folder / "adapter_config.json").is_file():
        raise CheckpointError(f"adapter folder '{path}' has no adapter_config.json; is it a "
                              "merged model? Then chat with it as MODEL, without --adapter")


def _quantization(bits: int | None):
    if bits is None:
        return None
    if not torch.cuda.is_available():
        raise SetupError(f"--bits {bits} quantises with bitsandbytes, which needs a CUDA GPU; "
                         "this machine has none: drop --bits")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise SetupError(f"--bits {bits} needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if bits == 4:  # v0's QLoRA settings: NF4 with double quantisation, fp16 compute
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16,
                                  bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                                  llm_int8_threshold=6.0, llm_int8_has_fp16_weight=False)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_model(model_path: str, adapter: str | None = None, bits: int | None = None,
               torch_dtype: str = "auto", offload_folder: str | None = None,
               trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` (``device_map="auto"`` on CUDA), then
    ``PeftModel.from_pretrained`` the adapter if one is given.

    The model folder's own Python code runs only with ``trust_remote_code`` (XTuner v0 always
    ran it).

    Raises:
        UsageError: the model folder is missing or not a model.
        RemoteCodeError: the model needs its own code and ``trust_remote_code`` is off.
        CheckpointError: the adapter folder is missing or has no ``adapter_config.json``.
        SetupError: ``--bits`` without CUDA/bitsandbytes, or a hub model that cannot be
            fetched (offline, unknown id).
    """
    check_model_path(model_path)
    if adapter is not None:
        check_adapter_dir(adapter)
    quantization = _quantization(bits)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(trust_remote_code=trust_remote_code,
                  dtype=resolve_dtype(torch_dtype, model_path=model_path))
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if torch.cuda.is_available():
        kwargs["device_map"] = "auto"
    if offload_folder is not None:
        kwargs["offload_folder"] = offload_folder
    from xtuner.utils.remote_code import remote_code_errors

    try:
        with remote_code_errors(f"model '{model_path}'"):
            # The model first: a folder with its own model code is refused before the
            # tokenizer's config lookup warns about the model type it does not know.
            model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(model_path,
                                                      trust_remote_code=trust_remote_code)
    except OSError as exc:  # not found on the hub / offline: transformers raises OSError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SetupError(f"cannot load model '{model_path}': {first}") from exc
    if adapter is not None:
        from peft import PeftModel

        extra = {"offload_folder": offload_folder} if offload_folder else {}
        model = PeftModel.from_pretrained(model, adapter, **extra)
    model.eval()
    return model, tokenizer
