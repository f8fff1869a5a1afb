"""What a checkpoint must hold, beyond weights and optimizer, to resume a run exactly.

mmengine restores the weights, the optimizer, the schedulers and the seed, but not (1) the
seed before the data loader is built (its sampler then shuffles with a fresh seed when the
config has ``seed=None``), (2) the random streams (dropout, sampling) at the moment of the
checkpoint, nor (3) the gradients accumulated so far when a checkpoint falls inside a
gradient-accumulation window. XTuner v0 fixed the first in its own loop; this module covers
all three for the plain runner and for DeepSpeed (where gradients live in DeepSpeed's own
buffers: see :func:`accumulated_gradients`).
"""
from __future__ import annotations

import os.path as osp
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size

from xtuner.utils.errors import CheckpointError

__all__ = ["read_checkpoint_meta", "check_resume_checkpoint", "capture_rng_state",
           "restore_rng_state", "accumulated_gradients", "restore_gradients"]


def _deepspeed_client_state_file(path: str) -> str | None:
    """The file of a DeepSpeed checkpoint folder that holds mmengine's ``meta``."""
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        candidate = osp.join(path, name)
        if osp.exists(candidate):
            return candidate
    return None


def _load(path: str):
    """``torch.load`` a checkpoint file memory-mapped (its tensors are not read).

    Raises:
        CheckpointError: the file is not a readable torch checkpoint (truncated by a full
            disk or a killed copy, or another format such as safetensors).
    """
    import pickle

    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"--resume: cannot read checkpoint {path} ({reason}): it is "
                              "truncated or not a training checkpoint; resume from another "
                              "iter_*.pth of the work dir") from exc


def read_checkpoint_meta(path: str) -> dict:
    """The ``meta`` dict of a checkpoint file or DeepSpeed checkpoint folder, without reading
    its tensors (the file is memory-mapped)."""
    if osp.isdir(path):
        path = _deepspeed_client_state_file(path)
        if path is None:
            return {}
    checkpoint = _load(path)
    return dict(checkpoint.get("meta") or {}) if isinstance(checkpoint, dict) else {}


def check_resume_checkpoint(path: str, model: torch.nn.Module) -> dict:
    """Check that ``path`` is a training checkpoint of ``model`` and return its ``meta``.

    mmengine would otherwise fail deep inside the resume with a ``KeyError: 'meta'`` (a
    Hugging Face weights file) or an optimizer ``ValueError`` (a checkpoint of another config,
    e.g. LoRA weights resumed into full fine-tuning). A DeepSpeed checkpoint folder is left to
    DeepSpeed.

    Raises:
        CheckpointError: unreadable, not written by ``xtuner train``, or holding other weights
            than ``model`` saves.
    """
    if osp.isdir(path):
        return read_checkpoint_meta(path)
    checkpoint = _load(path)
    if not isinstance(checkpoint, dict) or not {"meta", "state_dict"} <= set(checkpoint):
        raise CheckpointError(f"--resume: {path} is not a checkpoint written by xtuner train "
                              "(it has no 'meta' and 'state_dict'); give an iter_*.pth of a "
                              "work dir, or train from these weights by setting "
                              "pretrained_model_name_or_path instead")
    if not isinstance(model, torch.nn.Module):  # not built yet (FlexibleRunner)
        return dict(checkpoint.get("meta") or {})
    # Every trainable weight must be there (the optimizer state is theirs), and nothing the
    # model does not have. The whole state dict, not the model's own (a LoRA model saves only
    # its adapters), names everything a checkpoint may hold (quantisation states too).
    saved = set(checkpoint["state_dict"])
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(trainable - saved)
    unexpected = sorted(saved - set(torch.nn.Module.state_dict(model)))
    if missing or unexpected:
        problems = ([f"{len(missing)} weights missing (e.g. {missing[0]})"] if missing else []) \
            + ([f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else [])
        raise CheckpointError(f"--resume: {path} was saved by a run of another model or "
                              f"config ({'; '.join(problems)}): resume with the config that "
                              "wrote it")
    return dict(checkpoint.get("meta") or {})


def _local_rng_state() -> dict:
    keys_name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        # Plain tensors and numbers: loadable with `torch.load(weights_only=True)`.
        "numpy": {"name": keys_name, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def capture_rng_state() -> list[dict]:
    """Every rank's random streams (python, numpy, torch, CUDA), indexed by rank.

    A collective call: every rank must call it.
    """
    return all_gather_object(_local_rng_state())


def restore_rng_state(states: list[dict]) -> None:
    """Restore this rank's streams from :func:`capture_rng_state`'s result (a run resumed on
    another number of ranks keeps its own streams)."""
    if len(states) != get_world_size():
        return
    state = states[get_rank()]
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    # Checkpoints are loaded onto the training device: the generators want CPU tensors.
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"],
                         numpy_state["keys"].cpu().numpy().astype(np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def accumulated_gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The gradients accumulated inside an unfinished accumulation window, by parameter name
    (empty at a window's end, when the optimizer step has cleared them).

    Each rank holds its own partial sum; DDP averages them at the window's last backward, so
    replacing every rank's partial sum by the average over ranks gives the same update: the
    average is what is stored (and also left in place). A collective call when a window is
    open. Under DeepSpeed the gradients live in its own buffers and ``.grad`` is empty.
    """
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    if get_world_size() > 1:
        for grad in grads.values():
            all_reduce(grad, op="mean")
    return {name: grad.detach().to("cpu", copy=True) for name, grad in grads.items()}


def restore_gradients(model: torch.nn.Module, grads: dict[str, torch.Tensor]) -> None:
    """Put the gradients of :func:`accumulated_gradients` back on ``model``'s parameters."""
    params = dict(model.named_parameters())
    missing = sorted(set(grads) - set(params))
    if missing:
        raise RuntimeError(f"the checkpoint has gradients for parameters this model lacks: "
                           f"{missing[:3]}")
    for name, grad in grads.items():
        param = params[name]
        param.grad = grad.to(device=param.device, dtype=param.dtype)
