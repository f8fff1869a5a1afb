"""Turn a training config into a short benchmark run of the same model and method."""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import os.path as osp
import shutil
import time

import torch
from mmengine import print_log
from mmengine.config import Config, ConfigDict

from xtuner.engine.config import config_max_length, type_name
from xtuner.utils.errors import ConfigError

from .synthetic import DEFAULT_SAMPLE_LENGTHS, SyntheticPackedDataset

__all__ = ["llm_path", "vision_tower_path", "make_random_init_model", "benchmark_config"]


def llm_path(cfg: Config) -> str:
    """``model.llm.pretrained_model_name_or_path``, with a clear error when absent."""
    llm = (cfg.get("model") or {}).get("llm")
    path = llm.get("pretrained_model_name_or_path") if isinstance(llm, dict) else None
    if not path:
        raise ConfigError(f"{cfg.filename}: model.llm.pretrained_model_name_or_path is not set; "
                          "xtuner benchmark builds the model the config describes")
    return str(path)


def vision_tower_path(cfg: Config) -> str:
    """A LLaVA config's ``model.visual_encoder.pretrained_model_name_or_path``."""
    vision = cfg.model.get("visual_encoder")
    path = vision.get("pretrained_model_name_or_path") if isinstance(vision, dict) else None
    if not path:
        raise ConfigError(f"{cfg.filename}: model.visual_encoder.pretrained_model_name_or_path "
                          "is not set")
    return path


def _wait_for(path: str, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while not osp.exists(path):
        if time.monotonic() > deadline:
            raise ConfigError(f"timed out waiting for rank 0 to write {path}")
        time.sleep(2)


def load_model_config(path_or_name: str, trust_remote_code=False):
    """The model's ``config.json`` (from the hub if need be), or one clear error."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path_or_name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the model config of '{path_or_name}' "
                          f"(model.llm.pretrained_model_name_or_path): "
                          f"{str(exc).splitlines()[0]}") from None


def make_random_init_model(path_or_name: str, cache_dir: str, trust_remote_code=False,
                           auto_class: str = "AutoModelForCausalLM") -> str:
    """A local model folder with random weights and the architecture of ``path_or_name``
    (only its ``config.json`` is read, from the hub if need be), so the config's own
    ``from_pretrained`` call, quantization included, loads it as it would load the real one.

    The folder is keyed on the architecture and reused; local rank 0 writes it (atomically)
    and the other ranks of the node wait for it. ``auto_class``: the transformers Auto class
    that builds it (``AutoModel`` for a LLaVA vision tower).
    """
    import transformers

    config = load_model_config(path_or_name, trust_remote_code)
    key = hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()[:16]
    target = osp.join(cache_dir, f"random_init_{key}")
    done = osp.join(target, "config.json")
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        _wait_for(done)
        return target
    if osp.exists(done):
        return target
    tmp = f"{target}.tmp{os.getpid()}"
    print_log(f"--random-init: building {config.model_type} with random weights in {target}",
              logger="current", level=logging.INFO)
    build = getattr(transformers, auto_class).from_config
    model = None
    if torch.cuda.is_available():
        # The GPU draws the random weights fastest; bf16 halves what is written (from_pretrained
        # casts to the config's dtype on load).
        try:
            with torch.device("cuda"):
                model = build(config, dtype=torch.bfloat16, trust_remote_code=trust_remote_code)
        except torch.OutOfMemoryError:
            # The small GPU a QLoRA job is sized for cannot hold the 16-bit model it loads
            # 4-bit: build it in host memory instead.
            torch.cuda.empty_cache()
            print_log("--random-init: the 16-bit model does not fit on this GPU; building it "
                      "on the CPU", logger="current", level=logging.INFO)
    if model is None:
        # Without a GPU, float32 (what a CPU run computes in); after one, bf16 (its size).
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model = build(config, dtype=dtype, trust_remote_code=trust_remote_code)
    model.save_pretrained(tmp)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    os.makedirs(cache_dir, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def benchmark_config(cfg: Config, *, steps: int, warmup: int, seq_len: int | None = None,
                     sample_lengths: tuple[int, int] = DEFAULT_SAMPLE_LENGTHS,
                     model_path: str | None = None, vision_path: str | None = None) -> Config:
    """A copy of ``cfg`` that trains ``warmup + steps`` iterations on synthetic packed rows.

    The model, method (LoRA/QLoRA, dtype, attention, kernels, checkpointing), optimizer and
    batch size are the config's; the dataset, schedulers, evaluation, checkpoint saving and
    custom hooks are left out. ``model_path`` replaces the model's weights folder
    (``--random-init``), ``vision_path`` a LLaVA model's vision tower folder. A LLaVA model
    gets one random image per synthetic sample.
    """

    from xtuner.engine.runner import TrainLoop

    cfg = copy.deepcopy(cfg)
    model = cfg.model
    model.pop("tokenizer", None)  # synthetic ids never exceed the model's vocabulary
    if model_path is not None:
        model.llm["pretrained_model_name_or_path"] = model_path
    images = {}
    if model.get("visual_encoder") is not None:  # LLaVA
        model.pop("pretrained_pth", None)
        if vision_path is not None:
            model.visual_encoder["pretrained_model_name_or_path"] = vision_path
        vision = load_model_config(vision_tower_path(cfg))
        vision = getattr(vision, "vision_config", vision)
        images = dict(image_tokens=(vision.image_size // vision.patch_size) ** 2,
                      image_size=vision.image_size)
    path = llm_path(cfg)
    max_length = seq_len or config_max_length(cfg)
    if not max_length:
        raise ConfigError(f"{cfg.filename} sets no max_length; pass --seq-len")
    llm_config = load_model_config(path, model.llm.get("trust_remote_code", False))
    loader = cfg.train_dataloader
    batch_size = int(loader.get("batch_size", 1))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    iters = warmup + steps
    collate = dict(loader.get("collate_fn") or {})
    if not collate:
        # A dotted name: mmengine's function registry imports it (a function object set here
        # would not survive the config's dump).
        collate = dict(type="xtuner.dataset.collate_fns.default_collate_fn")
    collate["use_varlen_attn"] = bool(model.get("use_varlen_attn", False))
    collate["pad_index"] = 0  # rows are full: nothing is padded
    cfg.train_dataloader = ConfigDict(
        batch_size=batch_size,
        num_workers=min(2, int(loader.get("num_workers", 0))),
        dataset=dict(type=SyntheticPackedDataset, vocab_size=llm_config.vocab_size,
                     max_length=max_length, num_rows=iters * batch_size * world,
                     sample_lengths=tuple(sample_lengths), **images),
        # DefaultSampler without sequence parallelism; with it, one sample per group of ranks
        sampler=dict(type="xtuner.parallel.sequence.SequenceParallelSampler", shuffle=False),
        collate_fn=collate,
    )
    cfg.train_cfg = ConfigDict(type=TrainLoop, max_iters=iters)
    cfg.param_scheduler = None
    for key in ("val_dataloader", "val_cfg", "val_evaluator", "test_dataloader", "test_cfg",
                "test_evaluator", "visualizer", "load_from"):
        cfg.pop(key, None)
    cfg.resume = False
    cfg.custom_hooks = []
    cfg.default_hooks = ConfigDict(
        timer=dict(type="IterTimerHook"),
        logger=dict(type="LoggerHook", interval=max(1, steps), log_metric_by_epoch=False),
        param_scheduler=dict(type="ParamSchedulerHook"),
        checkpoint=None,
        sampler_seed=dict(type="DistSamplerSeedHook"),
    )
    cfg.log_processor = ConfigDict(by_epoch=False)
    cfg.max_length = max_length
    return cfg


def describe(cfg: Config) -> dict:
    """The settings a reader of the results needs (JSON-friendly)."""
    model = cfg.model
    llm = model.llm
    quant = llm.get("quantization_config")
    lora = model.get("lora") or model.get("llm_lora")  # SupervisedFinetune / LLaVAModel
    wrapper = cfg.optim_wrapper
    return {
        "model": osp.basename(str(llm.get("pretrained_model_name_or_path")).rstrip("/")),
        "method": ("qlora" if quant and lora else "lora" if lora else "full"),
        "seq_len": cfg.max_length,
        "batch_size": cfg.train_dataloader.batch_size,
        "varlen_attn": bool(model.get("use_varlen_attn", False)),
        "optim_wrapper": type_name(wrapper.get("type")),
        "amp_dtype": str(wrapper.get("dtype")),
        "config": osp.basename(cfg.filename) if cfg.filename else None,
    }
