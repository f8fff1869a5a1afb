"""``Trainer``: the typed configs of :mod:`xtuner.train.config`, run by xtuner's engine.

``Trainer.build_config()`` writes the same mmengine dict config a ``configs/`` file holds
(model, train_dataloader with ``process_hf_dataset`` packing and ``default_collate_fn``,
optim_wrapper, param_scheduler, train_cfg, hooks, randomness); ``fit()`` runs it through
``prepare_train_config`` + ``build_runner`` + ``runner.train()``, as ``xtuner train`` does.
"""
from __future__ import annotations

import json
import math
import os.path as osp
import sys
from typing import Any

from xtuner.train.config import (
    EncoderLLMConfig,
    ImageTextModelConfig,
    TrainerConfig,
    world_size,
)
from xtuner.utils.errors import ConfigError, DataError

__all__ = ["Trainer", "build_llm", "jsonl_source"]


def build_llm(pretrained_model_name_or_path: str, load_weights: bool = True,
              dtype: str = "auto"):
    """The causal LM of ``pretrained_model_name_or_path``: its weights, or (``load_weights``
    False) its architecture with random weights, for training from scratch."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from xtuner.model.utils import as_torch_dtype

    if load_weights:
        return AutoModelForCausalLM.from_pretrained(pretrained_model_name_or_path, dtype=dtype)
    model = AutoModelForCausalLM.from_config(
        AutoConfig.from_pretrained(pretrained_model_name_or_path))
    return model if dtype == "auto" else model.to(as_torch_dtype(dtype))


def _jsonl_files(anno_path: str) -> list[str]:
    from xtuner.dataset.image_text import jsonl_files  # imported when needed: torch etc.

    return jsonl_files(anno_path)


def jsonl_source(anno_path: str, sample_ratio: float = 1.0) -> tuple[dict, int | None]:
    """The ``load_dataset`` dict reading ``anno_path`` at ``sample_ratio``, and the
    ``max_dataset_length`` that trims a fractional ratio (None for a whole one).

    Files are listed ``ceil(ratio)`` times (``datasets`` concatenates them), so the dataset
    cache keys on the files as for any config.
    """
    from datasets import load_dataset

    files = _jsonl_files(anno_path)
    repeats = max(1, math.ceil(sample_ratio))
    keep = None
    if sample_ratio != repeats:
        records = sum(1 for f in files for line in open(f, encoding="utf-8") if line.strip())
        keep = max(1, round(sample_ratio * records))
    return dict(type=load_dataset, path="json", data_files=dict(train=files * repeats)), keep


def _map_fn(anno_path: str):
    """``openai_map_fn`` for ``messages`` records, none for ``conversation`` ones."""
    first = _jsonl_files(anno_path)[0]
    with open(first, encoding="utf-8") as f:
        line = next((ln for ln in f if ln.strip()), None)
    if line is None:
        raise DataError(f"{first} is empty")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{first}:1: not JSON ({exc})") from None
    if "messages" in record:
        from xtuner.dataset.map_fns import openai_map_fn

        parts = {p.get("type") for m in record["messages"] if isinstance(m, dict)
                 and isinstance(m.get("content"), list) for p in m["content"]
                 if isinstance(p, dict)}
        if parts - {"text"}:
            raise DataError(f"{first}:1: media parts {sorted(map(str, parts - {'text'}))} "
                            "need an encoder: use EncoderLLMConfig with "
                            "TimeSeriesTokenizeFnConfig, not LLMConfig")

        return openai_map_fn
    if "conversation" in record:
        return None
    raise DataError(f"{first}:1: expected a 'messages' (OpenAI) or 'conversation' (XTuner) "
                    f"record, got keys {sorted(record)}; or set TokenizeFnConfig.map_fn")


def _lora_cfg(lora):
    """A ``peft.LoraConfig`` object as a config dict (mmengine dumps and re-reads the run's
    config, which a dataclass instance breaks); only fields that differ from the defaults."""
    import dataclasses
    import enum

    if lora is None or isinstance(lora, dict) or not dataclasses.is_dataclass(lora):
        return lora
    out = dict(type=type(lora))
    for field in dataclasses.fields(lora):
        if not field.init:
            continue
        value = getattr(lora, field.name)
        default = (field.default_factory() if field.default_factory is not dataclasses.MISSING
                   else field.default)
        if value == default:
            continue
        if isinstance(value, set):
            value = sorted(value)
        if isinstance(value, enum.Enum):
            value = value.value
        out[field.name] = value
    return out


# Fields of the XTuner v1 configs that are accepted (so v1 scripts run) but change nothing in
# this engine, and why: a script that sets one is told so, never silently ignored.
_NO_EFFECT = {
    ("dataloader_cfg", "pack_to_max_length"): "rows are padded to the longest row of the batch",
    ("dataloader_cfg", "pack_extra_buffer_size"): "whole-sample packing plans every row at once",
    ("loss_cfg", "chunk_size"): "liger sizes its chunks from memory",
}


def _note_settings_without_effect(config: TrainerConfig) -> list[str]:
    """Log one line for each v1 field set in ``config`` that has no effect here; return the
    lines."""
    from mmengine import print_log

    notes = []
    for (part, field), why in _NO_EFFECT.items():
        if field in getattr(getattr(config, part), "model_fields_set", ()):
            notes.append(f"{part}.{field} ({why})")
    media = isinstance(config.model_cfg, (EncoderLLMConfig, ImageTextModelConfig))
    for i, item in enumerate(config.datasets):
        fields = getattr(item["dataset"], "model_fields_set", ())
        if "enable_sequential_sampler" in fields:
            notes.append(f"datasets[{i}].enable_sequential_sampler (the run's sampler is used)")
        if "media_root" in fields and not media:
            notes.append(f"datasets[{i}].media_root (a text model reads no media)")
    if isinstance(config.model_cfg, ImageTextModelConfig) and config.loss_cfg.mode == "chunk":
        notes.append("loss_cfg.mode='chunk' (image-text models use the eager loss)")
    lines = [f"TrainerConfig: {note} has no effect in xtuner; accepted for XTuner v1 scripts"
             for note in notes]
    for line in lines:
        print_log(line, logger="current", level=30)
    return lines


def _fsdp_as_zero3(config: TrainerConfig) -> str | None:
    """The DeepSpeed config that shards as ``fsdp_cfg`` asks (None: nothing to shard)."""
    from mmengine import print_log

    if config.fsdp_cfg is None:
        return None
    world = world_size()
    if world == 1:
        print_log("TrainerConfig.fsdp_cfg: one process, nothing to shard", logger="current")
        return None
    name = "deepspeed_zero3_offload" if config.fsdp_cfg.cpu_offload else "deepspeed_zero3"
    print_log(f"TrainerConfig.fsdp_cfg: parameters, gradients and optimizer states sharded "
              f"over {world} processes by DeepSpeed ZeRO-3 ({name}), this engine's full "
              "sharding", logger="current")
    return name


class Trainer:
    """Fine-tune with typed configs: ``Trainer(model_cfg=..., ...).fit()`` or
    ``Trainer.from_config(TrainerConfig(...)).fit()``.

    Run by ``python script.py`` (one process) or ``torchrun --nproc-per-node N script.py``.
    """

    def __init__(self, **fields: Any) -> None:
        self.config = TrainerConfig(**fields)

    @classmethod
    def from_config(cls, config: TrainerConfig) -> Trainer:
        if not isinstance(config, TrainerConfig):
            raise ConfigError(f"Trainer.from_config takes a TrainerConfig, got "
                              f"{type(config).__name__}")
        trainer = cls.__new__(cls)
        trainer.config = config
        return trainer

    # -- the mmengine config ------------------------------------------------------------
    def build_config(self, filename: str | None = None):
        """The mmengine ``Config`` ``xtuner train`` would run for this run (not yet prepared
        by ``prepare_train_config``)."""
        _note_settings_without_effect(self.config)
        import torch
        from mmengine.config import Config
        from mmengine.hooks import (
            CheckpointHook,
            DistSamplerSeedHook,
            IterTimerHook,
            LoggerHook,
        )
        from mmengine.optim import AmpOptimWrapper
        from transformers import AutoTokenizer

        from xtuner.dataset import ConcatDataset, process_hf_dataset
        from xtuner.dataset.collate_fns import default_collate_fn
        from xtuner.dataset.map_fns import template_map_fn_factory
        from xtuner.dataset.media import (
            TS_TOKENS,
            add_special_tokens,
            media_collate_fn,
        )
        from xtuner.engine.hooks import HFCheckpointHook, ThroughputHook
        from xtuner.engine.runner import TrainLoop
        from xtuner.model import SupervisedFinetune
        from xtuner.model.encoder_llm import EncoderLLM
        from xtuner.parallel.sequence import SequenceParallelSampler
        from xtuner.train.hooks import NestedConfigThroughputHook, OptimStepSchedulerHook
        from xtuner.utils import PROMPT_TEMPLATE

        c = self.config
        m, dl = c.model_cfg, c.dataloader_cfg
        packing = dl.pack_level != "none"
        varlen = m.use_varlen_attn and packing
        media = isinstance(m, EncoderLLMConfig)
        image_text = isinstance(m, ImageTextModelConfig)
        processor_path = (getattr(m, "processor_path", None) or c.tokenizer_path or m.path)
        tokenizer = dict(type=AutoTokenizer.from_pretrained,
                         pretrained_model_name_or_path=c.tokenizer_path or m.path,
                         padding_side="right")
        if media:  # the same special tokens for the data and the model
            tokenizer = dict(type=add_special_tokens, tokenizer=tokenizer, tokens=TS_TOKENS)
        llm = dict(type=build_llm, pretrained_model_name_or_path=c.load_from or m.path,
                   load_weights=c.load_from is not None, dtype=m.dtype)
        checkpointing = m.use_activation_checkpointing
        fsdp = c.fsdp_cfg
        if fsdp is not None and fsdp.recompute_ratio is not None:
            checkpointing = fsdp.recompute_ratio == 1.0
        model = dict(
            use_varlen_attn=varlen, use_activation_checkpointing=checkpointing,
            use_liger_kernel={"eager": False, "liger": True, "chunk": "auto"}[c.loss_cfg.mode],
            loss_reduction=c.loss_cfg.loss_reduction, llm=llm)
        if image_text:
            from xtuner.model.image_text import ImageTextFinetune, build_image_text_model

            model.update(type=ImageTextFinetune, processor=processor_path,
                         lora=_lora_cfg(m.lora),
                         freeze_vision=m.freeze_vision, freeze_projector=m.freeze_projector,
                         # liger's fused loss is not wired for these models: eager loss.
                         use_liger_kernel=c.loss_cfg.mode == "liger",
                         model=dict(llm, type=build_image_text_model))
            model.pop("llm")
        elif media:
            model.update(type=EncoderLLM, tokenizer=tokenizer, encoder=m.encoder,
                         context_token=m.context_token, projector_depth=m.projector_depth,
                         freeze_llm=m.freeze_llm, freeze_encoder=m.freeze_encoder,
                         llm_lora=_lora_cfg(m.lora))
        else:
            model.update(type=SupervisedFinetune, lora=_lora_cfg(m.lora),
                         max_position_embeddings=m.max_position_embeddings)
            if fsdp is not None and fsdp.torch_compile:
                model["use_torch_compile"] = True
        seed = c.seed if c.seed is not None else 0

        datasets = []
        for i, item in enumerate(c.datasets if not image_text else []):
            ds, fn = item["dataset"], item["tokenize_fn"]
            if fn.max_length is not None and fn.max_length != dl.pack_max_length:
                raise ConfigError(f"datasets[{i}].tokenize_fn.max_length={fn.max_length}: "
                                  f"samples are cut at pack_max_length={dl.pack_max_length} "
                                  "here; leave max_length None or set it equal")
            if media:
                datasets.append(self._media_dataset(i, ds, fn, tokenizer, packing, seed))
                continue
            source, keep = jsonl_source(ds.anno_path, ds.sample_ratio)
            datasets.append(dict(
                type=process_hf_dataset, dataset=source, tokenizer=tokenizer,
                max_length=dl.pack_max_length, max_dataset_length=keep,
                dataset_map_fn=fn.map_fn if fn.map_fn is not None else _map_fn(ds.anno_path),
                template_map_fn=dict(type=template_map_fn_factory,
                                     template=PROMPT_TEMPLATE[fn.template]),
                remove_unused_columns=True, shuffle_before_pack=True,
                pack_to_max_length=packing, use_varlen_attn=varlen,
                packing="v0" if dl.pack_level == "hard" else "whole", seed=seed))
        if image_text:
            dataset = self._image_text_dataset(processor_path, packing, seed)
        else:
            dataset = datasets[0] if len(datasets) == 1 else dict(type=ConcatDataset,
                                                                   datasets=datasets)
        collate = media_collate_fn if media else default_collate_fn
        if image_text:
            from xtuner.dataset.image_text import image_text_collate_fn

            collate = image_text_collate_fn

        world = world_size()
        if world % c.sp_size:
            raise ConfigError(f"sp_size={c.sp_size} does not divide the {world} processes; "
                              "use a divisor of the process count")
        # Ranks of one sequence-parallel group share their rows: the groups are the batch.
        groups = world // c.sp_size
        if c.global_batch_size % groups:
            what = (f"the {world} processes" if c.sp_size == 1 else
                    f"the {groups} data-parallel groups ({world} processes / sp_size "
                    f"{c.sp_size})")
            raise ConfigError(f"global_batch_size={c.global_batch_size} is not a multiple of "
                              f"{what} (each forwards one packed row per step)")
        accumulation = c.global_batch_size // groups
        o = c.optim_cfg
        optimizer = dict(type=torch.optim.AdamW, lr=o.lr, betas=tuple(o.betas),
                         weight_decay=o.weight_decay, eps=o.eps)
        if o.foreach is not None:
            optimizer["foreach"] = o.foreach
        optim_wrapper = dict(type=AmpOptimWrapper, optimizer=optimizer,
                             accumulative_counts=accumulation,
                             loss_scale="dynamic", dtype="bfloat16")
        if o.max_grad_norm is not None:
            optim_wrapper["clip_grad"] = dict(max_norm=o.max_grad_norm,
                                              error_if_nonfinite=False)

        by_epoch = c.total_step is None
        # total_step counts optimizer steps (v1); mmengine's loop counts micro-batches.
        length = c.epochs if by_epoch else c.total_step * accumulation
        train_cfg = (dict(type=TrainLoop, max_epochs=length) if by_epoch
                     else dict(type=TrainLoop, max_iters=length))

        default_hooks = dict(
            timer=dict(type=IterTimerHook),
            logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=c.log_interval),
            # The schedule counts optimizer steps, so N processes match one on the same
            # global batch (mmengine's hook counts micro-batches).
            param_scheduler=dict(type=OptimStepSchedulerHook, schedulers=self._schedulers(),
                                 accumulative_counts=accumulation),
            checkpoint=dict(type=CheckpointHook, by_epoch=False,
                            interval=c.checkpoint_interval or -1,
                            max_keep_ckpts=c.checkpoint_maxkeep or -1),
            sampler_seed=dict(type=DistSamplerSeedHook))
        cfg = dict(
            tokenizer=tokenizer, model=model,
            train_dataloader=dict(
                batch_size=1, num_workers=dl.num_workers, dataset=dataset,
                # DefaultSampler without sequence parallelism; with it, the same rows for
                # the ranks of one sequence-parallel group
                sampler=dict(type=SequenceParallelSampler, shuffle=True, seed=c.seed),
                collate_fn=dict(type=collate, use_varlen_attn=varlen)),
            optim_wrapper=optim_wrapper,
            train_cfg=train_cfg,
            custom_hooks=[dict(type=NestedConfigThroughputHook if image_text
                               else ThroughputHook),
                          # Every model kind: the LLM (+ tokenizer) or the model's save_hf.
                          dict(type=HFCheckpointHook, interval=c.hf_interval,
                               max_keep=c.hf_max_keep)],
            default_hooks=default_hooks,
            env_cfg=dict(cudnn_benchmark=False,
                         mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                         dist_cfg=dict(backend="nccl" if torch.cuda.is_available()
                                       else "gloo")),
            visualizer=None, log_level="INFO", load_from=None, resume=False,
            randomness=dict(seed=c.seed, deterministic=False),
            # Each logged loss is the mean over the iterations since the previous line.
            log_processor=dict(by_epoch=False, window_size=c.log_interval),
            work_dir=c.work_dir)
        if c.sp_size > 1:
            cfg["sequence_parallel_size"] = c.sp_size
        if filename is None and sys.argv and str(sys.argv[0]).endswith(".py") and osp.isfile(
                sys.argv[0]):
            filename = sys.argv[0]  # the user's script: mmengine keeps its text in the dump
        return Config(cfg, filename=filename)

    def _media_dataset(self, i: int, ds, fn, tokenizer: dict, packing: bool,
                       seed: int) -> dict:
        """A :class:`~xtuner.dataset.media.MediaJsonlDataset` of time-series records."""
        from xtuner.dataset.media import MediaJsonlDataset, TimeSeriesTokenizeFunction

        m, dl = self.config.model_cfg, self.config.dataloader_cfg
        if ds.sample_ratio != int(ds.sample_ratio):
            raise ConfigError(f"datasets[{i}].dataset.sample_ratio={ds.sample_ratio}: media "
                              "datasets take whole ratios (the file is read that many times)")
        tokenize_fn = dict(
            type=TimeSeriesTokenizeFunction, tokenizer=tokenizer,
            encoder_config=(m.encoder_config if m.encoder_config is not None
                            else m.encoder["config"]),
            media_root=fn.media_root or ds.media_root or ".", max_length=dl.pack_max_length,
            chat_template=fn.chat_template, max_samples=fn.max_samples)
        return dict(type=MediaJsonlDataset,
                    data_path=_jsonl_files(ds.anno_path) * int(ds.sample_ratio),
                    tokenize_fn=tokenize_fn, pack_to_max_length=packing, seed=seed)

    def _image_text_dataset(self, processor_path: str, packing: bool, seed: int) -> dict:
        """One :class:`~xtuner.dataset.image_text.ImageTextJsonlDataset` over every source
        (so image-text and pure-text samples pack into the same rows)."""
        from xtuner.dataset.image_text import ImageTextJsonlDataset

        dl = self.config.dataloader_cfg
        sources, templates = [], set()
        for i, item in enumerate(self.config.datasets):
            ds, fn = item["dataset"], item["tokenize_fn"]
            if fn.max_length is not None and fn.max_length != dl.pack_max_length:
                raise ConfigError(f"datasets[{i}].tokenize_fn.max_length={fn.max_length}: "
                                  f"samples are cut at pack_max_length={dl.pack_max_length} "
                                  "here; leave max_length None or set it equal")
            templates.add(fn.chat_template)
            sources.append(dict(anno_path=ds.anno_path, media_root=ds.media_root or ".",
                                sample_ratio=ds.sample_ratio))
        if len(templates) > 1:
            raise ConfigError("datasets: every ImageTextTokenizeFnConfig must use the same "
                              "chat_template (one model, one template)")
        return dict(type=ImageTextJsonlDataset, sources=sources, processor=processor_path,
                    max_length=dl.pack_max_length, pack_to_max_length=packing,
                    chat_template=templates.pop(), seed=seed)

    def _schedulers(self) -> list[dict]:
        """Warmup then decay, ``begin``/``end`` as fractions of the run's optimizer steps
        (:class:`~xtuner.train.hooks.OptimStepSchedulerHook` builds them)."""
        from mmengine.optim import ConstantLR, CosineAnnealingLR, LinearLR

        c = self.config
        lr = c.lr_cfg
        warm = lr.warmup_ratio
        out = []
        if warm > 0:
            out.append(dict(type=LinearLR, start_factor=1e-3, begin=0.0, end=warm))
        if lr.lr_type == "cosine":
            out.append(dict(type=CosineAnnealingLR, eta_min=lr.lr_min, begin=warm, end=1.0))
        elif lr.lr_type == "linear":
            out.append(dict(type=LinearLR, start_factor=1.0,
                            end_factor=lr.lr_min / c.optim_cfg.lr, begin=warm, end=1.0))
        else:
            out.append(dict(type=ConstantLR, factor=1.0, begin=warm, end=1.0))
        return out

    # -- running -------------------------------------------------------------------------
    def prepare_defaults(self) -> dict:
        """What the config's fields ask of ``prepare_train_config``: ``resume``,
        ``deepspeed`` and ``vis_backends`` (``xtuner train``'s flags win over them)."""
        c = self.config
        return dict(resume="auto" if c.resume_cfg.auto_resume else c.resume_cfg.resume_from,
                    deepspeed=c.deepspeed or _fsdp_as_zero3(c),
                    vis_backends=["tensorboard"] if c.exp_tracker == "tensorboard" else [])

    def prepared_config(self):
        """:meth:`build_config` passed through ``prepare_train_config``, as ``xtuner train``
        does (launcher ``pytorch`` under torchrun)."""
        from xtuner.engine.train_setup import prepare_train_config

        return prepare_train_config(self.build_config(),
                                    launcher="pytorch" if world_size() > 1 else "none",
                                    **self.prepare_defaults())

    def fit(self):
        """Train; returns the mmengine runner (its ``work_dir`` holds logs and checkpoints,
        ``WORK_DIR/hf_model`` the Hugging Face export)."""
        from xtuner.engine.runner.build import build_runner

        runner = build_runner(self.prepared_config())
        runner.train()
        return runner
