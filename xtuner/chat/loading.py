"""Load the model, tokenizer and adapter for ``xtuner chat``, with one-line errors.

:func:`load_adapter` is also how ``xtuner convert merge`` and the LLaVA loader apply an adapter.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch

from xtuner.model.utils import normalize_dtype
from xtuner.utils.errors import CheckpointError, SetupError, UsageError
from xtuner.utils.paths import looks_local

__all__ = ["check_adapter_dir", "check_model_path", "load_adapter", "load_model",
           "resolve_dtype"]


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


def check_model_path(path: str) -> None:
    """Fail in one line when ``path`` is meant as a local model folder but is not one."""
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise UsageError(f"model '{path}' is a file; expected a Hugging Face model folder "
                             "(with config.json) or a hub id")
        if not (local / "config.json").is_file():
            if (local / "adapter_config.json").is_file():
                raise UsageError(f"'{path}' is a PEFT adapter, not a model; chat with its base "
                                 f"model: xtuner chat {adapter_base(local) or 'BASE'} "
                                 f"--adapter {path}")
            raise UsageError(f"model folder '{path}' has no config.json; point at a folder "
                             "written by save_pretrained (or `xtuner convert merge`)")
    elif looks_local(path):
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


def adapter_base(adapter_dir: str | os.PathLike) -> str | None:
    """The base model an adapter was trained on (``base_model_name_or_path`` in its
    ``adapter_config.json``), or ``None`` when it names none or cannot be read."""
    try:
        config = json.loads((Path(adapter_dir).expanduser() / "adapter_config.json")
                            .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("base_model_name_or_path") if isinstance(config, dict) else None


def load_adapter(model, adapter_dir: str, base_name: str, **kwargs):
    """``PeftModel.from_pretrained(model, adapter_dir)``, refusing an adapter that does not fit.

    peft loads a weight of another shape with a size-mismatch traceback, only warns about
    adapter weights of the model that the file lacks, and says nothing about weights in the
    file with no place in the model (a base with fewer layers silently drops them). So the
    adapter is loaded skipping misfits, and peft's own load report (``load_adapter``'s
    missing and unexpected keys) decides; a misfit weight shows up there as missing.

    Args:
        model: the base model.
        adapter_dir: the adapter folder (``adapter_config.json`` + weights).
        base_name: how the user named the base model, for the message.
        kwargs: passed to ``PeftModel.from_pretrained``.

    Raises:
        CheckpointError: one line with how many weights did not fit, an example of each
            kind, and the base the adapter was trained on.
    """
    from peft import PeftModel

    with warnings.catch_warnings():
        # peft's multi-line warnings on the misfits: they are reported below, in one line.
        for start in ("Found missing adapter keys", "Some weights of .*ignore_mismatched_sizes",
                      "Adapter name .* should not be contained"):
            warnings.filterwarnings("ignore", message=start)
        peft_model = PeftModel.from_pretrained(model, adapter_dir, ignore_mismatched_sizes=True,
                                               **kwargs)
        # from_pretrained drops load_adapter's report; loading the (small) adapter weights
        # again into the adapter it just made returns it.
        report = peft_model.load_adapter(adapter_dir, adapter_name=peft_model.active_adapter,
                                         is_trainable=kwargs.get("is_trainable", False),
                                         ignore_mismatched_sizes=True)
    if report.unexpected_keys or report.missing_keys:
        raise CheckpointError(_misfit_message(peft_model, report, adapter_dir, base_name))
    return peft_model


def _misfit_message(peft_model, report, adapter_dir: str, base_name: str) -> str:
    """One line on the adapter weights that did not fit ``base_name``."""
    problems = []
    if report.unexpected_keys:
        problems.append(f"{len(report.unexpected_keys)} adapter weights have no place in it "
                        f"(e.g. {report.unexpected_keys[0]})")
    if report.missing_keys:
        key = report.missing_keys[0]
        weight = peft_model.state_dict().get(key)
        shape = tuple(weight.shape) if weight is not None else "?"
        problems.append(f"{len(report.missing_keys)} adapter weights the model needs are "
                        f"missing from it or of another shape (e.g. {key}: shape {shape} in "
                        f"{base_name})")
    trained_on = adapter_base(adapter_dir)
    hint = (f"; it was trained on {trained_on}" if trained_on
            else "; pass the base model it was trained on")
    return f"adapter {adapter_dir} does not fit {base_name}: {'; '.join(problems)}{hint}"


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
        CheckpointError: the adapter folder is missing, has no ``adapter_config.json``, or
            does not fit the model.
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
        extra = {"offload_folder": offload_folder} if offload_folder else {}
        model = load_adapter(model, adapter, model_path, **extra)
    model.eval()
    return model, tokenizer
