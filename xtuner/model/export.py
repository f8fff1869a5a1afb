"""Turning training checkpoints into Hugging Face models, and checking that they match.

Used by ``xtuner convert pth_to_hf|merge|split`` and by :meth:`SupervisedFinetune.to_hf`:

* :func:`load_training_checkpoint` reads an ``iter_N.pth`` file (``torch.load`` with
  ``weights_only=True``) or a DeepSpeed checkpoint directory (ZeRO-1/2/3, consolidated on the
  CPU by DeepSpeed's own ``deepspeed.utils.zero_to_fp32``), and
  :func:`load_into_model` loads it after checking that it matches the model the config builds.
* :func:`save_hf` writes a PEFT adapter (LoRA/QLoRA) or a full model with its tokenizer.
* :func:`atomic_output_dir` writes into a temporary sibling directory that is renamed into place
  only when everything (the parity check included) succeeded.
* :func:`parity_inputs`, :func:`compute_logits` and :func:`compare_logits` run a few fixed
  prompts through the source and the written model and fail on drift beyond a dtype-aware
  tolerance.
* :func:`split_shards` rewrites a sharded or single-file model to one tensor per shard.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from xtuner.utils.errors import CheckpointError, ConfigError, SetupError, UsageError

__all__ = [
    "ParityError",
    "DTYPE_CHOICES",
    "PARITY_PROMPTS",
    "atomic_output_dir",
    "build_model",
    "checkpoint_dtype",
    "compare_logits",
    "compute_logits",
    "config_dtype",
    "exported_parameters",
    "load_into_model",
    "load_training_checkpoint",
    "parity_inputs",
    "parse_dtype",
    "round_to_dtype_",
    "safetensors_to_bin",
    "save_hf",
    "split_shards",
]

#: Fixed prompts of the parity check (tokenized with the model's tokenizer when it has one).
PARITY_PROMPTS: tuple[str, ...] = (
    "Give me the hex code for alice blue, an off-white with a hint of blue.",
    "def add(a, b):\n    return a + b",
    "你好，世界！The quick brown fox jumps over the lazy dog.",
)

DTYPE_CHOICES = ("auto", "fp16", "bf16", "fp32")
_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}

# Relative tolerance of the parity check, by the precision the compared forwards run in:
# max |logits_written - logits_source| must stay below rtol * max(1, max |logits_source|).
# fp32: only the order of floating-point operations differs (e.g. merged vs. unmerged LoRA).
# fp16/bf16: both sides round activations at every layer; bf16 keeps 8 mantissa bits.
PARITY_RTOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}


class ParityError(CheckpointError):
    """The written model does not reproduce the source model's logits."""


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``'fp16'``."""
    return _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def parse_dtype(name: str) -> torch.dtype:
    """``'fp16'``/``'bf16'``/``'fp32'`` (or ``'float16'``...) -> ``torch.dtype``."""
    from .utils import normalize_dtype

    dtype = normalize_dtype(name)
    if not isinstance(dtype, torch.dtype):
        raise UsageError(f"unknown dtype '{name}'; choose one of fp16, bf16, fp32")
    return dtype


# -- output directory -------------------------------------------------------------------------
def check_output_dir(save_dir: str | os.PathLike, overwrite: bool = False,
                     label: str = "SAVE_DIR") -> Path:
    """Refuse a ``save_dir`` that is a file, or a non-empty directory unless ``overwrite``."""
    save_dir = Path(save_dir).expanduser().absolute()
    if save_dir.exists() and not save_dir.is_dir():
        raise UsageError(f"{label} {save_dir} exists and is not a directory")
    if save_dir.is_dir() and any(save_dir.iterdir()) and not overwrite:
        raise UsageError(f"{label} {save_dir} already exists and is not empty; choose another "
                         "directory or pass --overwrite to replace it")
    return save_dir


def apply_umask(folder: str | os.PathLike) -> None:
    """Give ``folder`` and everything in it the modes a plain ``open``/``mkdir`` would.

    ``tempfile.mkdtemp`` makes our staging folder private (0700), and transformers writes its
    weight shards through ``mkstemp`` (0600): the output would be unreadable to a serving
    process of another user, unlike every other file the user writes.
    """
    umask = os.umask(0)
    os.umask(umask)
    folder = Path(folder)
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_output_dir(save_dir: str | os.PathLike, overwrite: bool = False,
                      label: str = "SAVE_DIR") -> Iterator[Path]:
    """Yield a temporary sibling of ``save_dir`` to write into; rename it into place at the end.

    If the block raises, the temporary directory is removed and ``save_dir`` is untouched, so a
    failed conversion never leaves a directory that looks complete. With ``overwrite`` an
    existing ``save_dir`` is replaced only after the new one is complete.
    """
    save_dir = check_output_dir(save_dir, overwrite, label)
    save_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{save_dir.name}.tmp-", dir=save_dir.parent))
    try:
        yield tmp
        apply_umask(tmp)
        if save_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{save_dir.name}.old-", dir=save_dir.parent))
            os.replace(save_dir, old)
            os.replace(tmp, save_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, save_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# -- reading training checkpoints -------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _torch_load(path: Path, trust: bool):
    try:
        try:
            # mmap: a full checkpoint's optimizer states (2x the model) stay on disk.
            return torch.load(path, map_location="cpu", weights_only=not trust, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise CheckpointError(
                f"{path} holds pickled Python objects that torch.load(weights_only=True) refuses "
                f"({_first_line(exc)}); xtuner's own checkpoints load safely. If you trust the "
                "file, pass --trust-checkpoint") from exc
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({_first_line(exc)})") from exc
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint "
                              f"({_first_line(exc)})") from exc


def _as_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "module", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict (expected a 'state_dict' of tensors)")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path} holds no tensors")
    # Weights saved through a DDP/DeepSpeed wrapper carry its prefix.
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_deepspeed_dir(path: Path, trust: bool) -> dict[str, torch.Tensor]:
    model_files = sorted(path.glob("*_model_states.pt"))
    if not model_files:
        raise CheckpointError(f"{path} is a directory without DeepSpeed '*_model_states.pt' "
                              "files; expected an iter_N.pth file or a DeepSpeed checkpoint "
                              "directory (work_dirs/CONFIG/iter_N.pth/)")
    if not any(path.glob("*_optim_states.pt")):
        # DeepSpeed without ZeRO keeps the full weights in the model states file.
        return _as_state_dict(_torch_load(model_files[0], trust), model_files[0])
    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError as exc:
        raise SetupError(f"{path} is a DeepSpeed checkpoint; reading it needs DeepSpeed "
                         f"(pip install deepspeed): {exc}") from exc
    try:
        # DeepSpeed's own consolidation (ZeRO-1/2/3, fp32 master weights, on the CPU). It
        # unpickles DeepSpeed's objects itself (weights_only=False). Frozen weights are left
        # out: they are the base model's, which the config loads anyway.
        state = get_fp32_state_dict_from_zero_checkpoint(
            str(path.parent), tag=path.name, exclude_frozen_parameters=True)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot consolidate DeepSpeed checkpoint {path}: "
                              f"{_first_line(exc)}") from exc
    return _as_state_dict(dict(state), path)


def load_training_checkpoint(path: str | os.PathLike, trust: bool = False
                             ) -> dict[str, torch.Tensor]:
    """Read the model weights of a training checkpoint, on the CPU.

    Args:
        path: an ``iter_N.pth`` file (``{'meta': ..., 'state_dict': ...}`` as mmengine saves it,
            or a bare state dict), or a DeepSpeed checkpoint directory ``iter_N.pth/`` holding
            ``mp_rank_00_model_states.pt`` (``zero_pp_rank_0_mp_rank_00_model_states.pt`` for
            ZeRO-3) and one ``*_optim_states.pt`` per rank, or a work dir (its
            ``last_checkpoint``).
        trust: unpickle arbitrary objects (``torch.load(weights_only=False)``); only for
            files from a trusted source.

    Returns:
        ``{name: tensor}`` with the names of the training model (``llm.…``).

    Raises:
        CheckpointError: missing, unreadable or not a checkpoint.
    """
    path = Path(path).expanduser()
    if path.is_dir() and (path / "last_checkpoint").is_file():
        # A training work dir: its latest checkpoint (e.g. LLaVA's pre-training stage).
        path = Path((path / "last_checkpoint").read_text(encoding="utf-8").strip())
    if path.is_dir():
        return _load_deepspeed_dir(path, trust)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return _as_state_dict(_torch_load(path, trust), path)


def load_into_model(model, state: dict[str, torch.Tensor], source: str = "checkpoint",
                    config: str = "the config") -> None:
    """Load ``state`` into a ``SupervisedFinetune`` after checking that it fits.

    Every trainable weight must be present with the right shape and nothing else may be there
    (a LoRA checkpoint holds only adapter weights; frozen base weights come from the config's
    model).

    Raises:
        CheckpointError: naming how many weights are missing/unexpected/misshapen, with examples.
    """
    expected = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(trainable - set(state))
    misshapen = sorted(k for k in set(state) & set(expected)
                       if tuple(state[k].shape) != tuple(expected[k].shape))
    if unexpected or missing or misshapen:
        problems = []
        if missing:
            problems.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if misshapen:
            k = misshapen[0]
            problems.append(f"{len(misshapen)} of another shape (e.g. {k}: "
                            f"{tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
        kind = "LoRA" if getattr(model, "use_lora", False) else "full fine-tuning"
        raise CheckpointError(
            f"{source} does not match the {kind} model of {config}: {'; '.join(problems)}. "
            "Pass the config the checkpoint was trained with")
    model.load_state_dict(state, strict=False)


# -- building the model -----------------------------------------------------------------------
def build_model(cfg):
    """Build ``cfg.model`` for conversion (no activation checkpointing; eval mode).

    Raises:
        ConfigError: the config has no ``model``, or its model cannot be loaded.
    """
    from xtuner.registry import BUILDER

    if "model" not in cfg:
        raise ConfigError(f"{cfg.filename} has no 'model' to convert")
    model_cfg = copy.deepcopy(cfg.model)
    if "use_activation_checkpointing" in model_cfg or _is_sft(model_cfg.get("type")):
        model_cfg["use_activation_checkpointing"] = False
    if _is_sft(model_cfg.get("type")):
        # The export runs on the CPU and writes plain modules: no fused Triton kernels.
        model_cfg["use_liger_kernel"] = False
    try:
        model = BUILDER.build(model_cfg)
    except OSError as exc:  # a model path that does not exist, or no access to the hub
        raise ConfigError(f"cannot build the model of {cfg.filename}: {_first_line(exc)}") from exc
    return model.eval()


def _is_sft(type_obj) -> bool:
    """``type_obj`` (a class, a dotted name or a lazy object) is ``SupervisedFinetune`` or a
    subclass (DPO, ORPO, RewardModel, LLaVAModel, EncoderLLM), which all take
    ``use_liger_kernel`` and ``use_activation_checkpointing``."""
    from xtuner.engine.config import resolve_type

    from .sft import SupervisedFinetune

    cls = resolve_type(type_obj)  # None for a dotted name that does not import
    return isinstance(cls, type) and issubclass(cls, SupervisedFinetune)


def build_base_llm(llm_cfg):
    """The bare LLM of a config's ``model.llm``, built as training builds it."""
    from .utils import apply_device_fallbacks, build_from_cfg

    if isinstance(llm_cfg, torch.nn.Module):
        return llm_cfg
    return build_from_cfg(apply_device_fallbacks(dict(llm_cfg)))


def config_dtype(cfg) -> torch.dtype | None:
    """The dtype the config loads the LLM in (``model.llm.dtype``/``torch_dtype``), if set."""
    from .utils import normalize_dtype

    llm = cfg.get("model", {}).get("llm", {})
    if not isinstance(llm, dict):
        return None
    value = normalize_dtype(llm.get("dtype", llm.get("torch_dtype")))
    if value == "auto":
        path = llm.get("pretrained_model_name_or_path")
        config_file = Path(str(path)) / "config.json"
        if config_file.is_file():
            saved = json.loads(config_file.read_text(encoding="utf-8"))
            value = normalize_dtype(saved.get("dtype", saved.get("torch_dtype")))
    return value if isinstance(value, torch.dtype) else None


def checkpoint_dtype(path: str | os.PathLike, default: torch.dtype | None = torch.float16
                     ) -> torch.dtype | None:
    """The dtype a model folder's ``config.json`` stores its weights in (``dtype``, or the older
    ``torch_dtype``; a CLIP model's ``vision_config``), else ``default``.

    ``xtuner chat`` and ``xtuner convert merge`` both load a model in this dtype unless told
    otherwise; ``default`` (fp16, as XTuner v0) covers a config that names none.
    """
    from .utils import normalize_dtype

    config_file = Path(path).expanduser() / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        for node in (config, config.get("vision_config") or {}):
            value = normalize_dtype(node.get("dtype", node.get("torch_dtype")))
            if isinstance(value, torch.dtype):
                return value
    return default


# -- writing ----------------------------------------------------------------------------------
def exported_parameters(model) -> list[torch.nn.Parameter]:
    """The parameters ``to_hf`` writes: the adapter (trainable ones) for LoRA, else all."""
    params = model.llm.parameters()
    if getattr(model, "use_lora", False):
        return [p for p in params if p.requires_grad and p.is_floating_point()]
    return [p for p in params if p.is_floating_point()]


def save_hf(model, cfg, save_dir: str | os.PathLike, dtype: torch.dtype = torch.float16,
            save_pretrained_kwargs: dict | None = None) -> None:
    """Write ``model`` (a ``SupervisedFinetune``) as a Hugging Face model or PEFT adapter.

    LoRA/QLoRA: the adapter (``adapter_config.json`` + ``adapter_model.safetensors``, including
    ``modules_to_save``) that ``peft.PeftModel.from_pretrained(base, save_dir)`` loads; only the
    adapter weights are cast to ``dtype``. Full fine-tuning: the model in ``dtype`` and the
    config's tokenizer, loadable with ``AutoModelForCausalLM.from_pretrained``. The model is
    cast in place (v0 behaviour).

    ``save_pretrained_kwargs``: ``max_shard_size`` (full models), ``safe_serialization``
    (``False`` writes ``.bin`` files), and anything else ``save_pretrained`` takes.
    """
    from .utils import build_from_cfg

    kwargs = dict(save_pretrained_kwargs or {})
    safe = kwargs.pop("safe_serialization", True)
    llm = model.llm
    for p in exported_parameters(model):
        p.data = p.data.to(dtype)
    llm.config.use_cache = True
    try:
        if getattr(model, "use_lora", False):
            kwargs.pop("max_shard_size", None)  # peft writes one adapter file
            llm.save_pretrained(str(save_dir), safe_serialization=safe, **kwargs)
            return
        if cfg is not None and cfg.get("tokenizer") is not None:
            build_from_cfg(cfg.tokenizer).save_pretrained(str(save_dir))
        # transformers 5 always writes safetensors (and shards them itself).
        llm.save_pretrained(str(save_dir), **kwargs)
        _reset_attn_implementation(Path(save_dir))
        if not safe:
            safetensors_to_bin(save_dir)
    finally:
        llm.config.use_cache = False


def _reset_attn_implementation(save_dir: Path) -> None:
    """Drop xtuner's private attention backend (``xtuner_varlen``) from ``config.json``: it
    exists only in a process that registered it, and plain transformers would refuse it."""
    config_file = save_dir / "config.json"
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    changed = False
    for key in ("_attn_implementation", "attn_implementation"):
        if str(config.get(key, "")).startswith("xtuner"):
            config.pop(key)
            changed = True
    if changed:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                               encoding="utf-8")


def safetensors_to_bin(save_dir: str | os.PathLike) -> None:
    """Rewrite ``model*.safetensors`` (+ index) of ``save_dir`` as ``pytorch_model*.bin``."""
    from safetensors.torch import load_file

    save_dir = Path(save_dir)
    index_file = save_dir / "model.safetensors.index.json"
    if index_file.is_file():
        index = json.loads(index_file.read_text(encoding="utf-8"))
        renames = {name: _bin_name(name) for name in sorted(set(index["weight_map"].values()))}
        for name in tqdm(renames, desc="Writing .bin shards"):
            torch.save(load_file(save_dir / name), save_dir / renames[name])
            (save_dir / name).unlink()
        index["weight_map"] = {k: renames[v] for k, v in index["weight_map"].items()}
        (save_dir / "pytorch_model.bin.index.json").write_text(
            json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        index_file.unlink()
    elif (save_dir / "model.safetensors").is_file():
        torch.save(load_file(save_dir / "model.safetensors"), save_dir / "pytorch_model.bin")
        (save_dir / "model.safetensors").unlink()


def _bin_name(safetensors_name: str) -> str:
    # model-00001-of-00003.safetensors -> pytorch_model-00001-of-00003.bin
    return "pytorch_" + safetensors_name[: -len(".safetensors")] + ".bin"


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike,
                         trust_remote_code: bool = False) -> bool:
    """Save the tokenizer of ``src`` into ``dst``; False when ``src`` has none.

    Raises:
        RemoteCodeError: the tokenizer needs its own code and ``trust_remote_code`` is off.
    """
    from transformers import AutoTokenizer

    from xtuner.utils.remote_code import remote_code_errors

    try:
        with remote_code_errors(f"the tokenizer of {src}"):
            tokenizer = AutoTokenizer.from_pretrained(str(src),
                                                      trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError):
        return False
    tokenizer.save_pretrained(str(dst))
    return True


# -- parity check -----------------------------------------------------------------------------
def parity_inputs(tokenizer=None, vocab_size: int | None = None,
                  prompts: Sequence[str] = PARITY_PROMPTS) -> list[torch.Tensor]:
    """Token ids of the fixed prompts (fixed pseudo-random ids when there is no tokenizer)."""
    inputs = []
    if tokenizer is not None:
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
            ids = [i for i in ids if vocab_size is None or i < vocab_size]
            if ids:
                inputs.append(torch.tensor(ids, dtype=torch.long))
    if not inputs:
        generator = torch.Generator().manual_seed(0)
        high = vocab_size or 32
        inputs = [torch.randint(0, high, (n,), generator=generator) for n in (7, 16, 11)]
    return inputs


@torch.no_grad()
def compute_logits(model: torch.nn.Module, inputs: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Logits (fp32, CPU) of each prompt run alone through a causal LM (no padding)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    try:
        out = []
        for ids in inputs:
            logits = model(input_ids=ids[None].to(device), use_cache=False).logits
            out.append(logits[0].float().cpu())
        return out
    finally:
        model.train(was_training)


def _device_of(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def max_abs_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference over lists of tensors (inf where either is non-finite)."""
    worst = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return float("inf")
        diff = (x.float() - y.float()).abs()
        worst = max(worst, float(diff.nan_to_num(nan=float("inf")).max()))
    return worst


def parity_tolerance(reference: Sequence[torch.Tensor], compute_dtype: torch.dtype) -> float:
    """``rtol(compute_dtype) * max(1, max |reference|)`` (see :data:`PARITY_RTOL`)."""
    scale = max([1.0] + [float(r.abs().max()) for r in reference])
    return PARITY_RTOL.get(compute_dtype, PARITY_RTOL[torch.float16]) * scale


def compare_logits(reference: Sequence[torch.Tensor], written: Sequence[torch.Tensor],
                   compute_dtype: torch.dtype, what: str = "the written model") -> float:
    """Return the max |logit difference|; raise :class:`ParityError` above the tolerance."""
    diff = max_abs_diff(reference, written)
    tol = parity_tolerance(reference, compute_dtype)
    if not diff <= tol:  # also catches NaN
        raise ParityError(
            f"parity check failed: {what} gives logits that differ from the source by up to "
            f"{diff:.3g} (tolerance {tol:.3g} for {dtype_name(compute_dtype)} compute) on "
            f"{len(reference)} fixed prompts; nothing was written (use --no-verify to skip "
            "the check)")
    return diff


def check_finite(logits: Sequence[torch.Tensor], dtype: torch.dtype) -> None:
    """Raise :class:`ParityError` when rounding to ``dtype`` made the logits inf/NaN."""
    if not all(bool(torch.isfinite(x).all()) for x in logits):
        raise ParityError(
            f"the weights overflow {dtype_name(dtype)}: the model rounded to "
            f"{dtype_name(dtype)} gives inf/NaN logits; export with --dtype bf16 or fp32")


@torch.no_grad()
def round_to_dtype_(params: Iterable[torch.Tensor], dtype: torch.dtype) -> None:
    """Round tensors to ``dtype``'s precision in place, keeping their own dtype."""
    for p in params:
        if p.is_floating_point() and p.dtype != dtype:
            p.data.copy_(p.data.to(dtype))


def free(*objects) -> None:
    """Drop references and return their memory (CPU and CUDA) before loading another model."""
    del objects
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- split --------------------------------------------------------------------------------------
_WEIGHT_FORMATS = (
    # (index file, single file, shard name template, is safetensors)
    ("model.safetensors.index.json", "model.safetensors",
     "model-{:05d}-of-{:05d}.safetensors", True),
    ("pytorch_model.bin.index.json", "pytorch_model.bin",
     "pytorch_model-{:05d}-of-{:05d}.bin", False),
)


def find_weights(src: Path) -> tuple[str, list[str], dict | None, bool]:
    """``(format name, shard files, index or None, is_safetensors)`` of a model directory."""
    for index_name, single_name, _, safe in _WEIGHT_FORMATS:
        if (src / index_name).is_file():
            index = json.loads((src / index_name).read_text(encoding="utf-8"))
            shards = sorted(set(index.get("weight_map", {}).values()))
            missing = [s for s in shards if not (src / s).is_file()]
            if missing:
                raise CheckpointError(f"{src / index_name} names shard {missing[0]}, which "
                                      "does not exist")
            return index_name, shards, index, safe
        if (src / single_name).is_file():
            return single_name, [single_name], None, safe
    raise CheckpointError(f"{src} holds no model weights (expected model.safetensors, "
                          "model.safetensors.index.json, pytorch_model.bin or "
                          "pytorch_model.bin.index.json)")


def _read_shard(path: Path, safe: bool) -> dict[str, torch.Tensor]:
    if safe:
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def split_shards(src: str | os.PathLike, dst: str | os.PathLike, verify: bool = True) -> dict:
    """Copy a model directory, rewriting its weights to one tensor per shard (v0's ``split``).

    The weight format stays the same (safetensors -> ``model-XXXXX-of-NNNNN.safetensors`` +
    ``model.safetensors.index.json``, ``.bin`` -> ``pytorch_model-…bin`` + its index); other
    files are copied. With ``verify`` every written tensor is read back and compared bitwise.

    Returns:
        The new index.
    """
    src, dst = Path(src), Path(dst)
    index_name, shards, index, safe = find_weights(src)
    template = next(t for i, s, t, f in _WEIGHT_FORMATS if f == safe)
    out_index_name = next(i for i, s, t, f in _WEIGHT_FORMATS if f == safe)
    weight_files = set(shards) | {index_name}
    for item in sorted(src.iterdir()):
        if item.name in weight_files or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)
    names: list[str] = []
    if index is not None:
        names = list(index["weight_map"])
    else:
        names = list(_read_shard(src / shards[0], safe))
    total = len(names)
    weight_map: dict[str, str] = {}
    total_size = 0
    count = 0
    with tqdm(total=total, desc="Writing one tensor per shard", unit="tensor") as bar:
        for shard in tqdm(shards, desc="Loading shards", leave=False):
            state = _read_shard(src / shard, safe)
            for name in sorted(state):
                count += 1
                out_name = template.format(count, total)
                tensor = state[name].contiguous()
                _write_shard({name: tensor}, dst / out_name, safe)
                weight_map[name] = out_name
                total_size += tensor.numel() * tensor.element_size()
                bar.update(1)
            del state
    if count != total:
        raise CheckpointError(f"{src / index_name} lists {total} tensors but its shards hold "
                              f"{count}")
    new_index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (dst / out_index_name).write_text(json.dumps(new_index, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
    if verify:
        _verify_split(src, shards, safe, dst, weight_map)
    return new_index


def _write_shard(state: dict[str, torch.Tensor], path: Path, safe: bool) -> None:
    if safe:
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt"})
    else:
        torch.save(state, path)


def _verify_split(src: Path, shards: list[str], safe: bool, dst: Path,
                  weight_map: dict[str, str]) -> None:
    for shard in tqdm(shards, desc="Verifying", leave=False):
        for name, tensor in _read_shard(src / shard, safe).items():
            written = _read_shard(dst / weight_map[name], safe)[name]
            if written.dtype != tensor.dtype or not torch.equal(written, tensor):
                raise ParityError(f"split check failed: tensor {name} in {weight_map[name]} "
                                  "differs from the source; nothing was written")
