"""Turn a loaded config plus ``xtuner train`` flags into a config mmengine can run.

Everything the train tool derives lives here (not in the config files): work dir, seed,
resume, device fallbacks, the crash-safe checkpoint hook, the collate pad id and DeepSpeed.
"""
from __future__ import annotations

import glob
import logging
import os
import os.path as osp

import torch
from mmengine import print_log
from mmengine.config import Config, ConfigDict

from xtuner.engine.config import make_dumpable, type_name
from xtuner.engine.memory_budget import apply_memory_budget
from xtuner.utils.errors import CheckpointError, ConfigError, SetupError

__all__ = ["prepare_train_config", "apply_speed_defaults", "REQUIRED_KEYS"]

REQUIRED_KEYS = ("model", "train_dataloader", "train_cfg", "optim_wrapper")


def check_required_keys(cfg: Config) -> None:
    """Report every missing top-level section at once."""
    missing = [k for k in REQUIRED_KEYS if cfg.get(k) is None]
    if missing:
        raise ConfigError(f"config {cfg.filename} lacks {', '.join(missing)}; see "
                          "`xtuner copy-cfg` output for a complete config")


def check_batch_size(cfg: Config) -> None:
    """``train_dataloader.batch_size`` must be a whole number above 0: torch's ``DataLoader``
    refuses anything else with a traceback once the runner builds it."""
    value = (cfg.get("train_dataloader") or {}).get("batch_size")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ConfigError(f"train_dataloader.batch_size={value!r} in {cfg.filename}: set it "
                          "to a whole number of 1 or more (rows per step and process)")


def check_train_length(cfg: Config) -> None:
    """``train_cfg.max_epochs``/``max_iters`` must be above 0 (fractions of an epoch are
    allowed): mmengine would train one step on 0 or less and report success."""
    train_cfg = cfg.get("train_cfg") or {}
    for key in ("max_epochs", "max_iters"):
        value = train_cfg.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            hint = "above 0 (e.g. 0.1 for a tenth of an epoch)" if key == "max_epochs" \
                else "to 1 or more"
            raise ConfigError(f"train_cfg.{key}={value} in {cfg.filename}: a run must be "
                              f"longer than 0; set {key} (or train_cfg.{key}) {hint}")


def _strict_arguments(target) -> set[str] | None:
    """The keyword arguments of ``target`` when its signature is exact -- one of xtuner's
    classes, a dataclass (peft's ``LoraConfig``) or a torch optimizer, taking no
    ``**kwargs`` -- else None."""
    import dataclasses
    import inspect

    if not isinstance(target, type) or not (target.__module__.startswith("xtuner.")
                                            or dataclasses.is_dataclass(target)
                                            or issubclass(target, torch.optim.Optimizer)):
        return None
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_model_arguments(cfg: Config) -> None:
    """Every key of the ``model`` dict (and of the ``type=`` dicts inside it) and of the
    optimizer must be an argument of its class, where the class's signature says exactly
    which it takes.

    A misspelled key (``use_activation_checkpointin``), or v0's ``optim_type = SGD`` beside
    AdamW's ``betas``, would otherwise end, once built, in a ``TypeError: __init__() got an
    unexpected keyword argument`` traceback.

    Raises:
        ConfigError: naming the key, the file and the closest argument.
    """
    from xtuner.engine.config import resolve_type
    from xtuner.utils.errors import did_you_mean

    def check(node, where: str, registry=None) -> None:
        if not isinstance(node, dict):
            return
        if "type" in node:
            try:
                target = resolve_type(node["type"])
            except (ImportError, AttributeError):
                target = None  # building it reports that
            if target is None and registry is not None and isinstance(node["type"], str):
                target = registry.get(node["type"])  # a registered name, e.g. 'SGD'
            accepted = _strict_arguments(target)
            for key in node if accepted is not None else ():
                if key not in ("type", "_scope_") and key not in accepted:
                    raise ConfigError(f"{where}.{key} in {cfg.filename}: {target.__qualname__} "
                                      f"takes no argument '{key}'"
                                      f"{did_you_mean(key, accepted)}; fix or remove it")
        for key, value in node.items():
            check(value, f"{where}.{key}")

    check(cfg.get("model"), "model")
    from mmengine.registry import OPTIMIZERS

    check((cfg.get("optim_wrapper") or {}).get("optimizer"), "optim_wrapper.optimizer",
          OPTIMIZERS)


def _amp_fallback(cfg: Config) -> None:
    """mmengine's AmpOptimWrapper asserts a GPU: on the CPU train in fp32 instead."""
    wrapper = cfg.optim_wrapper
    if torch.cuda.is_available() or type_name(wrapper.get("type")) != "AmpOptimWrapper":
        return
    from mmengine.optim import OptimWrapper

    keep = {k: v for k, v in wrapper.items() if k not in ("type", "loss_scale", "dtype",
                                                          "use_fsdp", "master_weights")}
    cfg.optim_wrapper = ConfigDict(type=OptimWrapper, **keep)
    also = ""
    if (cfg.get("model") or {}).get("adapters_16bit"):
        cfg.model["adapters_16bit"] = False  # fp32 training has no master weights
        also = "; model.adapters_16bit off"
    print_log(f"No CUDA device: AmpOptimWrapper replaced by OptimWrapper (fp32 training){also}",
              logger="current", level=logging.WARNING)


def _crash_safe_checkpoints(cfg: Config) -> None:
    from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook

    from xtuner.engine.hooks import CheckpointHook

    hook = (cfg.get("default_hooks") or {}).get("checkpoint")
    if hook is None:
        return
    hook_type = hook.get("type")
    if hook_type is MMEngineCheckpointHook or hook_type in ("CheckpointHook",
                                                             "mmengine.hooks.CheckpointHook"):
        hook["type"] = CheckpointHook


def _tokenizer_pad_id(cfg: Config) -> int | None:
    from xtuner.model.utils import build_from_cfg

    tokenizer_cfg = cfg.get("tokenizer")
    if tokenizer_cfg is None:
        return None
    tokenizer = build_from_cfg(tokenizer_cfg)
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def _fill_pad_index(cfg: Config) -> None:
    """Pad with the tokenizer's pad id unless the config chose one (v0 padded with 0)."""
    collate = cfg.train_dataloader.get("collate_fn")
    if not isinstance(collate, dict) or collate.get("pad_index") is not None:
        return
    if type_name(collate.get("type")) != "default_collate_fn":
        return
    pad = _tokenizer_pad_id(cfg)
    if pad is not None:
        collate["pad_index"] = pad


# mmengine's visualizer backends and what each imports when the run starts:
# backend -> (module, what to install).
VIS_BACKEND_DEPENDENCIES = {
    "TensorboardVisBackend": ("torch.utils.tensorboard", "pip install 'xtuner[tensorboard]'"),
    "WandbVisBackend": ("wandb", "pip install 'xtuner[wandb]'"),
    "MLflowVisBackend": ("mlflow", "pip install mlflow"),
    "ClearMLVisBackend": ("clearml", "pip install clearml"),
    "NeptuneVisBackend": ("neptune", "pip install neptune"),
    "DVCLiveVisBackend": ("dvclive", "pip install dvclive"),
    "AimVisBackend": ("aim", "pip install aim"),
}


VIS_SWITCHES = {"tensorboard": "TensorboardVisBackend", "wandb": "WandbVisBackend"}


def add_vis_backends(cfg: Config, names) -> None:
    """``xtuner train --tensorboard/--wandb``: add mmengine's backend to the visualizer
    (keeping the local ``vis_data/scalars.json``)."""
    if not names:
        return
    from mmengine.visualization import Visualizer

    visualizer = cfg.get("visualizer")
    if not isinstance(visualizer, dict):
        visualizer = ConfigDict(type=Visualizer, vis_backends=[dict(type="LocalVisBackend")])
    backends = list(visualizer.get("vis_backends") or [])
    have = {type_name(b.get("type")) for b in backends if isinstance(b, dict)}
    for name in names:
        backend = VIS_SWITCHES[name]
        if backend not in have:
            backends.append(ConfigDict(type=backend))
    visualizer["vis_backends"] = backends
    cfg.visualizer = visualizer


def check_vis_backends(cfg: Config) -> None:
    """Fail in one line before training when a visualizer backend's package is missing
    (mmengine would raise an ImportError traceback while building the runner).

    A ``visualizer`` dict with ``vis_backends`` but no ``type`` gets mmengine's
    ``Visualizer``, so ``--cfg-options visualizer.vis_backends=...`` is enough to switch one
    on.
    """
    import importlib

    visualizer = cfg.get("visualizer")
    if not isinstance(visualizer, dict):
        return
    backends = visualizer.get("vis_backends") or []
    if isinstance(backends, dict):
        backends = [backends]
    if backends and visualizer.get("type") is None:
        from mmengine.visualization import Visualizer

        visualizer["type"] = Visualizer
    for i, backend in enumerate(backends):
        name = type_name(backend.get("type")) if isinstance(backend, dict) else ""
        if name not in VIS_BACKEND_DEPENDENCIES:
            continue
        module, install = VIS_BACKEND_DEPENDENCIES[name]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SetupError(f"visualizer.vis_backends[{i}] is {name}, which needs "
                             f"{module.split('.')[-1]} ({exc}): {install}, or drop the "
                             "backend") from None


def check_data_files(cfg: Config) -> None:
    """Fail in one line, naming the config key, when a local JSON/parquet data file of a
    ``load_dataset`` is missing (``datasets`` would raise a FileNotFoundError traceback)."""
    from xtuner.dataset.sources import callable_name, resolve_sources
    from xtuner.engine.config import resolve_type

    loader = cfg.get("train_dataloader")
    root = loader.get("dataset") if isinstance(loader, dict) else None
    if not isinstance(root, dict):
        return
    members = [("train_dataloader.dataset", root)]
    if callable_name(resolve_type(root.get("type"))) == "ConcatDataset":
        members = [(f"train_dataloader.dataset.datasets.{i}", d)
                   for i, d in enumerate(root.get("datasets") or [])]
    for where, member in members:
        source = member.get("dataset") if isinstance(member, dict) else None
        if not isinstance(source, dict) or source.get("data_files") is None:
            continue
        if (callable_name(resolve_type(source.get("type"))) == "load_dataset"
                and source.get("path") in ("json", "parquet")):
            try:
                resolve_sources(source, None, f"{where}.dataset")  # DataError: file missing
            except ConfigError:  # a layout the file check does not know; datasets decides
                continue


def _check_deepspeed_machine() -> None:
    if not torch.cuda.is_available():
        raise SetupError("--deepspeed needs a CUDA GPU (DeepSpeed's ZeRO and its launcher run "
                         "on GPUs) and this machine has none; train without --deepspeed")


def _single_process_rendezvous(env=os.environ) -> None:
    """One process without a launcher: describe a one-rank group in the environment.

    Without ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``/``LOCAL_RANK`` DeepSpeed's
    ``init_distributed`` tries to discover an MPI job, which needs ``mpi4py`` (and dies with
    ``No module named 'mpi4py'`` without it) although there is nothing to discover.
    """
    if "MASTER_PORT" not in env:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            env["MASTER_PORT"] = str(sock.getsockname()[1])
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1")):
        env.setdefault(key, value)


def _deepspeed_offloads(cfg: Config) -> bool:
    zero = ((cfg.get("strategy") or {}).get("config") or {}).get("zero_optimization") or {}
    device = (zero.get("offload_optimizer") or {}).get("device", "none")
    return device not in (None, "none")


def _adapters_16bit(cfg: Config) -> None:
    """``model.adapters_16bit=True`` (16-bit LoRA adapters) gets float32 master weights in the
    optimizer wrapper (``optim_wrapper.master_weights``) unless the config set that itself.

    Not on by default: on W2 (one H200) it saved autocast's casts of the adapters, 12% of a
    fully checkpointed step without the optimizer (445 -> 390 ms), but ``xtuner train`` ran
    no faster with it (5,159 against 5,115 tokens/s without checkpointing; within the
    step-to-step noise of the checkpointed runs).

    Raises:
        ConfigError: ``adapters_16bit=True`` with an optimizer wrapper that keeps no float32
            master weights.
    """
    model, wrapper = cfg.get("model") or {}, cfg.optim_wrapper
    if not model.get("adapters_16bit") or cfg.get("strategy") is not None:
        return  # DeepSpeed keeps its own masters
    if type_name(wrapper.get("type")) != "AmpOptimWrapper":
        raise ConfigError("model.adapters_16bit=True needs float32 master weights: use "
                          "optim_wrapper type AmpOptimWrapper (it sets master_weights=True) "
                          "or --deepspeed, or set model.adapters_16bit=False")
    if wrapper.setdefault("master_weights", True) is False:
        print_log("model.adapters_16bit=True with optim_wrapper.master_weights=False: the "
                  "optimizer updates the 16-bit adapters in 16-bit", logger="current",
                  level=logging.WARNING)


def apply_speed_defaults(cfg: Config) -> Config:
    """GPU defaults that change no result: fused optimizer kernels, no loss scaling for bf16
    (:func:`xtuner.engine.optim.fast_optimizer_defaults`), float32 master weights for 16-bit
    adapters (:func:`_adapters_16bit`) and the hook that fits
    ``use_activation_checkpointing='auto'`` to the memory budget."""
    if not torch.cuda.is_available():
        return cfg
    from xtuner.engine.optim import fast_optimizer_defaults

    fast_optimizer_defaults(cfg.optim_wrapper, offload=_deepspeed_offloads(cfg))
    _adapters_16bit(cfg)
    hooks = cfg.setdefault("custom_hooks", [])
    if not any(type_name(h.get("type")) == "ActivationCheckpointingHook" for h in hooks):
        from xtuner.engine.hooks import ActivationCheckpointingHook

        hooks.append(ConfigDict(type=ActivationCheckpointingHook))
    return cfg


def _work_dir(cfg: Config, work_dir: str | None) -> str:
    """``--work-dir``, else the config's, else ``./work_dirs/<config name>``; checked to be
    creatable (a file in its place would end in a FileExistsError traceback)."""
    if work_dir:
        chosen = work_dir
    elif cfg.get("work_dir"):
        chosen = cfg.work_dir
    else:
        chosen = osp.join("./work_dirs", osp.splitext(osp.basename(cfg.filename))[0])
    target = path = osp.abspath(osp.expanduser(chosen))
    while not osp.exists(path):  # the nearest part that exists must be a folder
        path = osp.dirname(path)
    if not osp.isdir(path):
        what = ("exists and is not a folder" if path == target
                else f"cannot be made: {path} is a file")
        raise ConfigError(f"work dir '{chosen}' {what}: give another --work-dir")
    return chosen


def check_fresh_work_dir(work_dir: str) -> None:
    """A new run (no ``--resume``) must not write into a work dir holding another run's
    checkpoints: its ``last_checkpoint`` would point at the new run, its dumped config be
    replaced and same-named ``iter_N.pth`` files overwritten.

    Raises:
        ConfigError: the work dir holds ``last_checkpoint``, ``iter_*.pth`` or ``epoch_*.pth``.
    """
    found = sorted(glob.glob(osp.join(glob.escape(work_dir), "iter_*.pth"))
                   + glob.glob(osp.join(glob.escape(work_dir), "epoch_*.pth")),
                   key=osp.getmtime)
    if found or osp.exists(osp.join(work_dir, "last_checkpoint")):
        latest = osp.basename(found[-1]) if found else "last_checkpoint"
        raise ConfigError(f"work dir {work_dir} already holds checkpoints of a run ({latest}): "
                          "continue it with --resume auto, or give another --work-dir")


def _resume(cfg: Config, resume: str | None) -> None:
    if resume is None:
        return
    cfg.resume = True
    if resume == "auto":
        cfg.load_from = None
        last = osp.join(cfg.work_dir, "last_checkpoint")
        if not osp.exists(last):
            print_log(f"--resume auto: no {last} yet, starting from scratch",
                      logger="current", level=logging.WARNING)
        return
    if not osp.exists(resume):
        raise CheckpointError(f"--resume: checkpoint '{resume}' does not exist")
    if osp.isdir(resume) and osp.exists(osp.join(resume, "last_checkpoint")):
        # A work dir, as `xtuner test` and `pth_to_hf` take it: its latest checkpoint.
        from xtuner.engine.run_report import last_checkpoint

        latest = last_checkpoint(resume)
        if latest is None:
            raise CheckpointError(f"--resume: work dir {resume}'s last_checkpoint names a "
                                  "file that does not exist; give an iter_*.pth of it")
        print_log(f"--resume {resume}: resuming its last checkpoint {latest}",
                  logger="current")
        resume = latest
    elif osp.isdir(resume) and not glob.glob(osp.join(glob.escape(resume), "*model_states.pt")):
        raise CheckpointError(f"--resume: {resume} is a folder but neither a work dir (no "
                              "last_checkpoint) nor a DeepSpeed checkpoint; give an "
                              "iter_*.pth file or the work dir")
    cfg.load_from = resume


def prepare_train_config(cfg: Config, work_dir: str | None = None, launcher: str = "none",
                         seed: int | None = None, resume: str | None = None,
                         deepspeed: str | None = None, vis_backends=(),
                         memory_budget=None, check_work_dir: bool = True) -> Config:
    """Apply ``xtuner train``'s flags and the machine's limits to ``cfg`` (in place).

    Args:
        cfg: the loaded config.
        work_dir: ``--work-dir`` (else ``cfg.work_dir``, else ``./work_dirs/<config name>``).
        launcher: ``none``, ``pytorch``, ``slurm`` or ``mpi``.
        seed: ``--seed``; when resuming, the checkpoint's seed wins (mmengine restores it).
        resume: ``auto`` (latest in the work dir) or a checkpoint path.
        deepspeed: a DeepSpeed JSON path or shipped name.
        vis_backends: names of :data:`VIS_SWITCHES` to log to (``--tensorboard``, ``--wandb``).
        memory_budget: ``--memory-budget`` (else ``cfg.memory_budget``): plan the run's GPU
            memory to it (:mod:`xtuner.engine.memory_budget`).
        check_work_dir: refuse a new run (not resuming) into a work dir that holds another
            run's checkpoints (:func:`check_fresh_work_dir`); off for ``--print-config``.
    """
    check_required_keys(cfg)
    check_train_length(cfg)
    check_batch_size(cfg)
    cfg.launcher = launcher
    cfg.work_dir = _work_dir(cfg, work_dir)
    if seed is not None:
        cfg.setdefault("randomness", ConfigDict())
        cfg.randomness["seed"] = seed
    if check_work_dir and resume is None and not cfg.get("resume"):
        check_fresh_work_dir(cfg.work_dir)
    _resume(cfg, resume)
    _crash_safe_checkpoints(cfg)
    add_vis_backends(cfg, vis_backends)
    check_vis_backends(cfg)
    check_data_files(cfg)
    _fill_pad_index(cfg)
    if deepspeed:
        from xtuner.engine.deepspeed_config import apply_deepspeed
        from xtuner.utils.paths import resolve_deepspeed_config

        resolve_deepspeed_config(deepspeed)  # a misspelled name first, then the machine
        _check_deepspeed_machine()
        if launcher == "none":
            _single_process_rendezvous()
        apply_deepspeed(cfg, deepspeed)
    else:
        _amp_fallback(cfg)
    apply_speed_defaults(cfg)
    apply_memory_budget(cfg, memory_budget)
    check_model_arguments(cfg)  # as it will be built, after the settings above
    os.makedirs(cfg.work_dir, exist_ok=True)
    return make_dumpable(cfg)
