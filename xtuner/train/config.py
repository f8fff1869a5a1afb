"""Typed configs of the Python training API (seed 001's names, XTuner v1's spelling).

Each class refuses unknown fields and reports every bad field of one call on one line
(``ConfigError``), with the close match for a misspelt name. The configs describe a run; the
:class:`~xtuner.train.trainer.Trainer` turns them into the same mmengine dict config that
``xtuner train`` runs.
"""
from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xtuner.utils.errors import ConfigError, did_you_mean

__all__ = ["AdamWConfig", "CELossConfig", "DataloaderConfig", "DatasetConfig",
           "EncoderLLMConfig", "FSDPConfig", "ImageTextModelConfig", "ImageTextTokenizeFnConfig",
           "LLMConfig", "LRConfig", "ResumeConfig", "TimeSeriesTokenizeFnConfig",
           "TokenizeFnConfig", "TrainerConfig"]


def _one_line(cls: type[BaseModel], exc: ValidationError) -> str:
    """All of a ValidationError's problems, one line: ``Cls: field: problem; ...``."""
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(config)"
        if err["type"] == "extra_forbidden":
            name = str(err["loc"][-1])
            problems.append(f"unknown field {name!r}{did_you_mean(name, cls.model_fields)}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
    return f"{cls.__name__}: " + "; ".join(problems)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                              validate_assignment=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_one_line(type(self), exc)) from None


class LLMConfig(_Config):
    """A Hugging Face causal LM fine-tuned by :class:`xtuner.model.SupervisedFinetune`.

    Args:
        path: HF model folder or hub id; its ``config.json`` gives the architecture. The
            weights come from ``TrainerConfig.load_from`` (absent: random init, from scratch).
        lora: a ``peft.LoraConfig`` (or its dict) to train an adapter; None trains all weights.
        use_varlen_attn: packed samples do not attend to each other.
        dtype: the weights' dtype (``'float32'``, ``'bfloat16'``, ``'auto'``).
        use_activation_checkpointing: True, False or ``'auto'`` (fit to GPU memory).
        max_position_embeddings: extend the context (RoPE scaling) to this many tokens.
    """

    path: str
    lora: Any = None
    use_varlen_attn: bool = True
    dtype: str = "auto"
    use_activation_checkpointing: bool | Literal["auto"] = "auto"
    max_position_embeddings: int | None = None


class EncoderLLMConfig(_Config):
    """Seed 000's model: a Hugging Face encoder whose features, through a projector, replace
    the ``context_token`` placeholders of an LLM (:class:`xtuner.model.EncoderLLM`).

    Args:
        path: the LLM's HF folder or hub id (weights from ``TrainerConfig.load_from``).
        encoder: the encoder's config dict, e.g. ``dict(type=Wav2Vec2Model,
            config=dict(type=Wav2Vec2Config, ...))`` or ``dict(type=AutoModel.from_pretrained,
            pretrained_model_name_or_path=...)``.
        encoder_config: the encoder's transformers config (or its dict / folder) used to count
            features per signal; None takes ``encoder['config']``.
        context_token: the placeholder token the features replace.
        projector_depth: layers of the MLP projector.
        freeze_llm: keep the LLM's weights fixed (seed 000 does).
        freeze_encoder: keep the encoder's weights fixed.
        lora: a ``peft.LoraConfig`` for the LLM.
        use_varlen_attn, dtype, use_activation_checkpointing: as for :class:`LLMConfig`.
    """

    path: str
    encoder: dict
    encoder_config: Any = None
    context_token: str = "<TS_CONTEXT>"
    projector_depth: int = 2
    freeze_llm: bool = True
    freeze_encoder: bool = True
    lora: Any = None
    use_varlen_attn: bool = True
    dtype: str = "auto"
    use_activation_checkpointing: bool | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _check(self):
        if "type" not in self.encoder:
            raise ValueError("encoder must be a config dict with a 'type'")
        if self.encoder_config is None and "config" not in self.encoder:
            raise ValueError("encoder_config is needed when encoder has no 'config' entry")
        return self


class ImageTextModelConfig(_Config):
    """A Hugging Face image-text-to-text model (Qwen2-VL, Qwen2.5-VL, InternVL, ... that
    ``AutoModelForImageTextToText`` builds) with its processor and chat template
    (:class:`xtuner.model.image_text.ImageTextFinetune`).

    Args:
        path: the model's HF folder; its ``config.json`` gives the architecture, its
            processor files the processor. The weights come from ``TrainerConfig.load_from``
            (absent: random init).
        processor_path: the processor's folder when it is not ``path`` (else
            ``TrainerConfig.tokenizer_path``, else ``path``).
        lora: a ``peft.LoraConfig`` (or its dict) for the language model; None trains all
            unfrozen weights.
        freeze_vision: keep the vision tower fixed.
        freeze_projector: keep the projector (Qwen2-VL's merger) fixed.
        use_varlen_attn: packed samples do not attend to each other (packing needs it).
        dtype, use_activation_checkpointing: as for :class:`LLMConfig`.
    """

    path: str
    processor_path: str | None = None
    lora: Any = None
    freeze_vision: bool = True
    freeze_projector: bool = False
    use_varlen_attn: bool = True
    dtype: str = "auto"
    use_activation_checkpointing: bool | Literal["auto"] = "auto"


class DatasetConfig(_Config):
    """One JSONL source.

    Args:
        name: the source's alias (in logs).
        anno_path: a ``.jsonl`` file or a folder whose ``*.jsonl`` files are all read.
        media_root: folder that relative media paths are under (media models only).
        sample_ratio: how often each record is used: 5.0 repeats the file 5 times, 0.5 keeps
            a seeded random half; a fractional ratio above 1 keeps a seeded random
            ``round(ratio * N)`` of the records read ``ceil(ratio)`` times.
        class_name: ``'JsonlDataset'`` or ``'VLMJsonlDataset'`` (records in OpenAI
            ``messages`` or XTuner ``conversation`` form).
        enable_sequential_sampler: accepted for v1 configs; the sampler is the run's.
    """

    name: str = "default"
    anno_path: str
    media_root: str = ""
    sample_ratio: float = 1.0
    class_name: Literal["JsonlDataset", "VLMJsonlDataset"] = "JsonlDataset"
    enable_sequential_sampler: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.sample_ratio <= 0:
            raise ValueError(f"sample_ratio must be > 0, got {self.sample_ratio}")
        return self


class TokenizeFnConfig(_Config):
    """How records become tokens: map fn, chat template and length.

    Args:
        template: a name in ``xtuner.utils.PROMPT_TEMPLATE`` (e.g. ``'qwen_chat'``).
        max_length: tokens per sample; samples are cut at ``pack_max_length`` in this
            pipeline, so it must be None or equal to it.
        map_fn: a dataset map fn; None picks by the records' keys (``messages``: OpenAI,
            ``conversation``: none needed).
    """

    template: str
    max_length: int | None = None
    map_fn: Any = None

    @model_validator(mode="after")
    def _check(self):
        from xtuner.utils import PROMPT_TEMPLATE

        if self.template not in PROMPT_TEMPLATE:
            raise ValueError(f"unknown template {self.template!r}"
                             f"{did_you_mean(self.template, PROMPT_TEMPLATE)}")
        return self


class TimeSeriesTokenizeFnConfig(_Config):
    """Seed 000's time-series records for an :class:`EncoderLLMConfig` model
    (:class:`xtuner.dataset.media.TimeSeriesTokenizeFunction`; ChatML, loss on assistant
    turns; pure-text records too).

    Args:
        media_root: folder relative ``time_series_url`` paths are under (else the dataset's
            ``media_root``).
        max_length: None or ``pack_max_length`` (rows are cut there).
        chat_template: a Jinja chat template; None: ChatML.
        max_samples: keep at most this many samples of a signal (the seed: 240000).
    """

    media_root: str | None = None
    max_length: int | None = None
    chat_template: str | None = None
    max_samples: int | None = None


class ImageTextTokenizeFnConfig(_Config):
    """Image-text chat records for an :class:`ImageTextModelConfig` model
    (:class:`xtuner.dataset.image_text.ImageTextTokenizeFunction`): rendered by the
    processor's chat template, loss on assistant turns; pure-text records too.

    Args:
        max_length: None or ``pack_max_length`` (samples are cut there).
        chat_template: a Jinja chat template instead of the processor's.
    """

    max_length: int | None = None
    chat_template: str | None = None


class DataloaderConfig(_Config):
    """Packing and loading.

    Args:
        pack_max_length: tokens per packed row; every rank forwards one row per step.
        pack_to_max_length: accepted for v1 configs; rows are padded to the longest row of
            the batch (one row per step), which changes no result.
        pack_level: ``'soft'``/``'expand_soft'``: whole samples packed into rows;
            ``'hard'``: samples concatenated and cut every ``pack_max_length`` tokens (v0's
            packing); ``'none'``: one sample per row.
        collator: ``'sft_llm_collator'``, ``'sft_vllm_collator'`` or ``'default'``: xtuner's
            ``default_collate_fn``.
        num_workers: dataloader worker processes.
        dataset_config_list: the sources (seed 000's place for them).
        pack_extra_buffer_size: accepted for v1 configs (whole-sample packing plans every row
            at once).
    """

    pack_max_length: int = 32768
    pack_to_max_length: bool = True
    pack_level: Literal["soft", "expand_soft", "hard", "none"] = "expand_soft"
    collator: Literal["sft_llm_collator", "sft_vllm_collator", "default"] = "sft_llm_collator"
    num_workers: int = 0
    dataset_config_list: list[dict] | None = None
    pack_extra_buffer_size: int = 100


class AdamWConfig(_Config):
    """``torch.optim.AdamW`` plus gradient clipping (``max_grad_norm``)."""

    lr: float = 6e-5
    weight_decay: float = 0.001
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    foreach: bool | None = None


class LRConfig(_Config):
    """Learning-rate schedule: linear warmup over ``warmup_ratio`` of the run, then
    ``cosine`` or ``linear`` decay to ``lr_min``, or ``constant``."""

    lr_type: Literal["cosine", "linear", "constant"] = "constant"
    warmup_ratio: float = 0.03
    lr_min: float = 1e-6

    @model_validator(mode="after")
    def _check(self):
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        return self


class CELossConfig(_Config):
    """Cross-entropy.

    Args:
        mode: ``'eager'``: transformers' loss on full logits; ``'liger'``: liger's fused
            linear cross-entropy (raises where liger cannot run); ``'chunk'``: liger's fused,
            chunked loss where it can run (CUDA with liger installed), else eager.
        chunk_size: accepted for v1 configs; liger sizes its chunks from memory (about 1024
            tokens for 7B-class shapes).
        loss_reduction: ``'token'``, ``'sample'``, ``'square'`` or ``'v0'`` (see
            :class:`xtuner.model.SupervisedFinetune`).
    """

    mode: Literal["eager", "chunk", "liger"] = "eager"
    chunk_size: int | None = 1024
    loss_reduction: Literal["token", "sample", "square", "v0"] = "token"


class ResumeConfig(_Config):
    """``resume_from``: a checkpoint path; ``auto_resume``: the latest in the work dir."""

    resume_from: str | None = None
    auto_resume: bool = False


class FSDPConfig(_Config):
    """XTuner v1's sharding settings, run by this engine's full sharding.

    Parameters, gradients and optimizer states are sharded over the processes by DeepSpeed
    ZeRO-3 (the sharding the dict configs use, ``--deepspeed deepspeed_zero3``), not by
    torch's FSDP; one process shards nothing. A run says so in its log.

    Args:
        recompute_ratio: the share of decoder layers whose activations are recomputed:
            1.0 (all) or 0.0 (none); None keeps ``model_cfg.use_activation_checkpointing``.
        cpu_offload: keep optimizer states and parameters in host memory (ZeRO-3 offload).
        param_dtype: the compute dtype: ``'bfloat16'`` (autocast over float32 master
            weights, as every Trainer run).
        torch_compile: compile each decoder layer (text LLMs).
        tp_size, ep_size: tensor and expert parallelism: only 1 (not available here).
        reshard_after_forward: accepted for v1 scripts; ZeRO-3 always reshards.
    """

    recompute_ratio: float | None = None
    cpu_offload: bool = False
    param_dtype: str = "bfloat16"
    torch_compile: bool = False
    tp_size: int = 1
    ep_size: int = 1
    reshard_after_forward: bool = True

    @model_validator(mode="after")
    def _check(self):
        problems = []
        if self.recompute_ratio not in (None, 0.0, 1.0):
            problems.append(f"recompute_ratio={self.recompute_ratio}: only 1.0 (every layer) or "
                            "0.0 is available; for a memory-fitted share set "
                            "model_cfg.use_activation_checkpointing='auto'")
        for name in ("tp_size", "ep_size"):
            if getattr(self, name) != 1:
                problems.append(f"{name}={getattr(self, name)}: tensor and expert parallelism "
                                "are not available here; set 1 (sp_size splits sequences)")
        if str(self.param_dtype).removeprefix("torch.") != "bfloat16":
            problems.append(f"param_dtype={self.param_dtype!r}: Trainer runs compute in "
                            "bfloat16 over float32 master weights; set 'bfloat16'")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TrainerConfig(_Config):
    """Everything a run needs; ``Trainer.from_config(cfg).fit()`` (or ``cfg.fit()``) runs it.

    ``epoch_num`` is accepted as another name of ``total_epoch`` (seed 001 uses it);
    ``dataset_cfg`` as another name of ``dataset_config_list``, which may also sit in
    ``dataloader_cfg``. ``global_batch_size`` is in packed rows: each rank forwards one row
    per step and accumulates ``global_batch_size / world_size`` of them.

    ``hf_interval``: every that many optimizer steps the model is also written as a Hugging
    Face folder ``WORK_DIR/hf-STEP`` (``hf_max_keep``: keep only the newest that many);
    ``WORK_DIR/hf_model`` is always written at the end.

    ``sp_size``: GPUs per sequence (sequence parallel, see the README); the processes form
    ``world_size / sp_size`` data-parallel groups, and ``global_batch_size`` counts the rows
    of those groups.
    """

    model_cfg: LLMConfig | EncoderLLMConfig | ImageTextModelConfig
    tokenizer_path: str | None = None
    load_from: str | None = None
    optim_cfg: AdamWConfig = Field(default_factory=AdamWConfig)
    lr_cfg: LRConfig = Field(default_factory=LRConfig)
    dataset_config_list: list[dict] | None = None
    dataset_cfg: list[dict] | None = None
    dataloader_cfg: DataloaderConfig = Field(default_factory=DataloaderConfig)
    loss_cfg: CELossConfig = Field(default_factory=CELossConfig)
    global_batch_size: int = 1
    total_epoch: float | None = None
    epoch_num: float | None = None
    total_step: int | None = None
    work_dir: str = "work_dirs"
    checkpoint_interval: int | None = -1
    checkpoint_maxkeep: int | None = -1
    hf_interval: int | None = None
    hf_max_keep: int | None = None
    resume_cfg: ResumeConfig = Field(default_factory=ResumeConfig)
    seed: int | None = 42
    exp_tracker: Literal["tensorboard", "jsonl"] = "jsonl"
    log_interval: int = 10
    deepspeed: str | None = None
    sp_size: int = Field(default=1, ge=1)
    fsdp_cfg: FSDPConfig | None = None

    @model_validator(mode="after")
    def _check(self):
        problems = []
        if self.total_epoch is not None and self.epoch_num is not None:
            problems.append("give total_epoch or epoch_num (the same setting), not both")
        epochs = self.total_epoch if self.total_epoch is not None else self.epoch_num
        if (epochs is None) == (self.total_step is None):
            problems.append("give exactly one of total_epoch (or epoch_num) and total_step")
        sources = [n for n, v in (("dataset_config_list", self.dataset_config_list),
                                  ("dataset_cfg", self.dataset_cfg),
                                  ("dataloader_cfg.dataset_config_list",
                                   self.dataloader_cfg.dataset_config_list)) if v]
        if len(sources) != 1:
            problems.append("give the datasets once, in dataset_config_list, dataset_cfg or "
                            f"dataloader_cfg.dataset_config_list (got {len(sources)})")
        fn_type = (TimeSeriesTokenizeFnConfig if isinstance(self.model_cfg, EncoderLLMConfig)
                   else ImageTextTokenizeFnConfig
                   if isinstance(self.model_cfg, ImageTextModelConfig) else TokenizeFnConfig)
        for i, item in enumerate(self.datasets if len(sources) == 1 else []):
            if not isinstance(item, dict) or set(item) != {"dataset", "tokenize_fn"}:
                problems.append(f"datasets[{i}] must be {{'dataset': DatasetConfig(...), "
                                "'tokenize_fn': TokenizeFnConfig(...)}")
            elif not isinstance(item["dataset"], DatasetConfig) or not isinstance(
                    item["tokenize_fn"], fn_type):
                problems.append(f"datasets[{i}]: 'dataset' must be a DatasetConfig and "
                                f"'tokenize_fn' a {fn_type.__name__} for a "
                                f"{type(self.model_cfg).__name__}")
        if self.global_batch_size < 1:
            problems.append(f"global_batch_size must be >= 1, got {self.global_batch_size}")
        for name in ("hf_interval", "hf_max_keep"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1 or None, got {value}")
        if self.fsdp_cfg is not None and self.deepspeed is not None:
            problems.append("give fsdp_cfg or deepspeed, not both (fsdp_cfg shards with "
                            "DeepSpeed ZeRO-3)")
        if self.fsdp_cfg is not None and self.fsdp_cfg.torch_compile and not isinstance(
                self.model_cfg, LLMConfig):
            problems.append("fsdp_cfg.torch_compile is for text LLMs (LLMConfig)")
        if self.hf_max_keep is not None and self.hf_interval is None:
            problems.append("hf_max_keep needs hf_interval (the periodic exports it keeps)")
        if isinstance(self.model_cfg, ImageTextModelConfig):
            dl = self.dataloader_cfg
            if dl.pack_level == "hard":
                problems.append("dataloader_cfg.pack_level='hard' would cut samples inside "
                                "their images; use 'soft', 'expand_soft' or 'none'")
            elif dl.pack_level != "none" and not self.model_cfg.use_varlen_attn:
                problems.append("packing image-text samples needs model_cfg.use_varlen_attn="
                                "True (else packed samples attend to each other); or set "
                                "dataloader_cfg.pack_level='none'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def datasets(self) -> list[dict]:
        """The ``{'dataset', 'tokenize_fn'}`` items, wherever they were given."""
        return (self.dataset_config_list or self.dataset_cfg
                or self.dataloader_cfg.dataset_config_list or [])

    @property
    def epochs(self) -> float | None:
        return self.total_epoch if self.total_epoch is not None else self.epoch_num

    def fit(self):
        """Train (seed 001 calls ``fit`` on the config); returns the mmengine runner."""
        from xtuner.train.trainer import Trainer

        return Trainer.from_config(self).fit()


def world_size() -> int:
    """The number of processes torchrun started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))
