"""``ImageTextFinetune``: fine-tune a Hugging Face image-text-to-text model (Qwen2-VL,
Qwen2.5-VL, InternVL, ... as ``AutoModelForImageTextToText`` builds them).

The model is transformers' own class, used as it is: the vision features come from its
``get_image_features`` and are written over the image tokens of the text embeddings (what its
forward does), the LLM part then runs on ``inputs_embeds``. Doing that step here, rather than
passing ``pixel_values`` to the forward, keeps the packed text's sample boundaries
(``cu_seq_lens_*``) away from the vision tower, whose attention has its own per-image
boundaries.

Packed rows (several samples in one row, boundaries in ``cumulative_len``) are exact: the
text attention keeps to each sample (``use_varlen_attn``), and positions restart per sample;
for models with multimodal RoPE (Qwen2-VL's 3-D positions) each sample's positions come from
the model's own ``get_rope_index`` on that sample alone.

The export (:meth:`ImageTextFinetune.save_hf`) is one plain folder, adapters merged, with the
processor: ``AutoModelForImageTextToText.from_pretrained`` and ``AutoProcessor.from_pretrained``
load it.
"""
from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path

import torch
from mmengine import print_log

from xtuner.utils.errors import ConfigError, DataError

from .sft import SupervisedFinetune
from .utils import as_torch_dtype

__all__ = ["ImageTextFinetune", "build_image_text_model"]


# Models whose image tokens attend bidirectionally (token_type_ids masks): refused, since
# their loss here would silently differ from the model's own forward.
_BIDIRECTIONAL_IMAGE_ATTENTION = ("gemma3", "gemma3n", "paligemma")


def build_image_text_model(pretrained_model_name_or_path: str, load_weights: bool = True,
                           dtype: str = "auto"):
    """``AutoModelForImageTextToText`` of the folder: its weights, or (``load_weights``
    False) its architecture with random weights."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    if load_weights:
        return AutoModelForImageTextToText.from_pretrained(pretrained_model_name_or_path,
                                                           dtype=dtype)
    config = AutoConfig.from_pretrained(pretrained_model_name_or_path)
    if dtype == "auto":
        return AutoModelForImageTextToText.from_config(config)
    # Initialised in the training dtype: half the memory and time of fp32 for large shapes.
    return AutoModelForImageTextToText.from_config(config, dtype=as_torch_dtype(dtype))


def _find(model, names: tuple[str, ...]) -> tuple[str, torch.nn.Module] | tuple[None, None]:
    """The first submodule whose dotted name ends with one of ``names`` (in that order)."""
    modules = dict(model.named_modules())
    for name in names:
        for key, module in modules.items():
            if key == name or key.endswith("." + name):
                return key, module
    return None, None


def _scrub_attn_implementation(config: dict) -> None:
    """Drop xtuner's private attention backend from a saved config (and its sub-configs):
    it exists only in a process that registered it."""
    for key in ("_attn_implementation", "attn_implementation"):
        if str(config.get(key, "")).startswith("xtuner"):
            config.pop(key)
    for value in config.values():
        if isinstance(value, dict):
            _scrub_attn_implementation(value)


class ImageTextFinetune(SupervisedFinetune):
    """Supervised fine-tuning of an image-text-to-text model.

    Args:
        model: the model, or a config dict building it (:func:`build_image_text_model`).
        processor: the processor's folder (saved beside the exported model).
        lora: a ``peft.LoraConfig`` (or its dict) for the language model; ``target_modules``
            None adapts every linear layer of the language model. Trainable vision parts
            (``freeze_vision``/``freeze_projector`` False) train in full beside it.
        freeze_vision: keep the vision tower's weights fixed.
        freeze_projector: keep the projector (Qwen2-VL's merger, InternVL's
            ``multi_modal_projector``) fixed.
        use_varlen_attn: packed samples do not attend to each other (needed for packing).
        use_activation_checkpointing, activation_memory_budget, loss_reduction: as for
            :class:`~xtuner.model.SupervisedFinetune`.
        reentrant_checkpointing: as for :class:`~xtuner.model.SupervisedFinetune`, but off
            by default: some image-text models hand their layers trainable tensors as keyword
            arguments (Mllama's ``cross_attention_states``), which the reentrant checkpoint
            passes no gradient to.
    """

    def __init__(self, model, processor: str | None = None, lora=None,
                 freeze_vision: bool = True, freeze_projector: bool = False,
                 use_varlen_attn: bool = True, use_activation_checkpointing="auto",
                 activation_memory_budget=None, loss_reduction: str = "token",
                 use_liger_kernel=False, reentrant_checkpointing: bool = False):
        if use_liger_kernel is True:
            raise ConfigError("use_liger_kernel=True: liger's fused loss is not wired for "
                              "image-text models here; use CELossConfig(mode='eager')")
        super().__init__(llm=model, lora=None, use_varlen_attn=use_varlen_attn,
                         use_activation_checkpointing=use_activation_checkpointing,
                         activation_memory_budget=activation_memory_budget,
                         use_liger_kernel=False, loss_reduction=loss_reduction,
                         reentrant_checkpointing=reentrant_checkpointing)
        self.processor_path = processor
        hf = self.llm
        model_type = getattr(hf.config, "model_type", "")
        if model_type in _BIDIRECTIONAL_IMAGE_ATTENTION:
            raise ConfigError(f"{type(hf).__name__}: its image tokens attend to each other "
                              "both ways (a token_type_ids mask), which this causal, packed "
                              "path does not build; not supported here")
        self.image_token_id = getattr(hf.config, "image_token_id", None)
        if self.image_token_id is None:
            raise ConfigError(f"{type(hf).__name__}: its config has no image_token_id; not an "
                              "image-text-to-text model")
        self.language_name, _ = _find(hf, ("language_model",))
        self.vision_name, vision = _find(hf, ("visual", "vision_tower", "vision_model"))
        self.projector_name, _ = _find(hf, ("multi_modal_projector", "visual.merger",
                                            "mlp1"))
        if self.language_name is None or vision is None:
            raise ConfigError(f"{type(hf).__name__}: no language_model / vision tower "
                              "submodule found")
        self.freeze_vision, self.freeze_projector = freeze_vision, freeze_projector
        for name, param in hf.named_parameters():
            in_projector = self.projector_name and name.startswith(self.projector_name + ".")
            if in_projector:
                param.requires_grad_(not freeze_projector)
            elif name.startswith(self.vision_name + "."):
                param.requires_grad_(not freeze_vision)
        self.use_mrope = self._rope_index_fn() is not None
        if lora is not None:
            self._prepare_image_text_lora(lora)
            if self.is_checkpointing_activations:
                # peft hooks the embeddings of a model that checkpoints (for the reentrant
                # kind): set the chosen kind's hooks again.
                self.gradient_checkpointing_enable()

    # -- building ---------------------------------------------------------------------------
    def _prepare_image_text_lora(self, lora) -> None:
        from peft import get_peft_model

        from xtuner.registry import BUILDER

        if isinstance(lora, dict):
            lora = BUILDER.build(lora)
        lora = copy.deepcopy(lora)
        if lora.target_modules is None:
            # Every linear layer of the language model (full names: peft matches suffixes).
            prefix = self.language_name + "."
            lora.target_modules = sorted(
                name for name, module in self.llm.named_modules()
                if isinstance(module, torch.nn.Linear) and name.startswith(prefix))
        trainable = []
        if not self.freeze_vision:
            trainable.append(self.vision_name)
        elif self.projector_name and not self.freeze_projector:
            trainable.append(self.projector_name)
        # peft freezes everything but the adapters; modules_to_save trains (and saves) these.
        lora.modules_to_save = list(lora.modules_to_save or []) + trainable
        self.llm = get_peft_model(self.llm, lora)
        self.use_lora = True

    def _hf(self):
        """The transformers model (inside peft's wrapper when there is one)."""
        get_base = getattr(self.llm, "get_base_model", None)
        return get_base() if get_base is not None else self.llm

    def _rope_index_fn(self):
        hf = self._hf()
        inner = getattr(hf, "model", None)
        return getattr(inner, "get_rope_index", None) or getattr(hf, "get_rope_index", None)

    # -- inputs -------------------------------------------------------------------------------
    def _image_features(self, vision: dict) -> torch.Tensor:
        """``(tokens, hidden)`` features of the batch's images, in order."""
        hf = self._hf()
        fn = hf.get_image_features
        params = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in vision.items() if k in params}
        # What the model's forward passes from its config (InternVL: the feature layer and
        # the CLS-token strategy).
        for name in params:
            if name not in kwargs and hasattr(hf.config, name) and name != "kwargs":
                kwargs[name] = getattr(hf.config, name)
        out = fn(**kwargs)
        out = getattr(out, "pooler_output", out)
        if isinstance(out, (list, tuple)):
            return torch.cat([o.reshape(-1, o.shape[-1]) for o in out])
        return out.reshape(-1, out.shape[-1])

    def _embeddings(self, data: dict) -> torch.Tensor:
        input_ids = data["input_ids"]
        embeds = self._hf().get_input_embeddings()(input_ids)
        vision = data.get("vision")
        if not vision:
            return embeds
        features = self._image_features(vision)
        if data.get("blank_image"):
            # No image in this batch: the blank image's features touch the graph with
            # weight 0, so every trainable weight takes part on every rank.
            return embeds + features.sum().to(embeds.dtype) * 0
        mask = input_ids == self.image_token_id
        if int(mask.sum()) != features.shape[0]:
            raise DataError(f"{int(mask.sum())} image tokens in the batch but the vision "
                            f"tower gave {features.shape[0]} features")
        return embeds.masked_scatter(mask[..., None], features.to(embeds.dtype))

    def _bounds(self, data: dict, width: int) -> list[int]:
        bounds = data.get("cumulative_len")
        if bounds is None:
            return [0, width]
        if isinstance(bounds, (list, tuple)):
            bounds = bounds[0]
        return [int(b) for b in bounds]

    def _positions(self, data: dict) -> torch.Tensor:
        """Positions restarting per sample: ``(1, width)``, or ``(3, 1, width)`` from the
        model's ``get_rope_index`` per sample for multimodal RoPE."""
        input_ids = data["input_ids"]
        if input_ids.shape[0] != 1:
            raise ValueError("image-text batches are one row (image_text_collate_fn)")
        width = input_ids.shape[1]
        bounds = self._bounds(data, width)
        device = input_ids.device
        if not self.use_mrope:
            return torch.cat([torch.arange(e - s, device=device)
                              for s, e in zip(bounds[:-1], bounds[1:])])[None]
        rope_index = self._rope_index_fn()
        params = inspect.signature(rope_index).parameters
        grid = (data.get("vision") or {}).get("image_grid_thw")
        counts = list(data.get("image_counts") or [0] * (len(bounds) - 1))
        if data.get("blank_image"):
            counts = [0] * len(counts)
        out, taken = [], 0
        for (start, end), count in zip(zip(bounds[:-1], bounds[1:]), counts):
            if count == 0:
                out.append(torch.arange(end - start, device=device).expand(3, -1))
                continue
            ids = input_ids[:, start:end]
            kwargs = dict(input_ids=ids, image_grid_thw=grid[taken:taken + count])
            if "mm_token_type_ids" in params:  # transformers >= 5.2x
                kwargs["mm_token_type_ids"] = (ids == self.image_token_id).int()
            taken += count
            positions, _ = rope_index(**kwargs)
            out.append(positions[:, 0])
        return torch.cat(out, dim=1)[:, None]

    def _model_inputs(self, data: dict) -> dict:
        """The model's keyword arguments: ``inputs_embeds`` with the image features,
        per-sample positions, labels and the packed boundaries."""
        inputs = {"inputs_embeds": self._embeddings(data),
                  "position_ids": self._positions(data)}
        if data.get("labels") is not None:
            inputs["labels"] = data["labels"]
        cu_seqlens = self._packed_boundaries(data, data["input_ids"].device)
        if cu_seqlens is not None:
            from .sft import varlen_kwargs

            inputs.update(varlen_kwargs(cu_seqlens, data.get("max_seqlen")))
        elif len(self._bounds(data, data["input_ids"].shape[1])) > 2:
            raise ConfigError("a packed row needs use_varlen_attn=True (otherwise its "
                              "samples would attend to each other)")
        return inputs

    # -- export -------------------------------------------------------------------------------
    def plain_model(self, dtype: torch.dtype | None = None):
        """A copy of the model without adapters (merged) in ``dtype``, for export."""
        model = copy.deepcopy(self.llm)
        if self.use_lora:
            model = model.merge_and_unload()
        if dtype is not None:
            model = model.to(dtype)
        model.set_attn_implementation("sdpa")
        model.config.use_cache = True
        for sub in ("text_config",):
            sub_config = getattr(model.config, sub, None)
            if sub_config is not None:
                sub_config.use_cache = True
        return model

    def save_hf(self, save_dir, dtype: torch.dtype | None = None,
                max_shard_size: str | int = "5GB") -> Path:
        """Write the model (adapters merged) and its processor as one Hugging Face folder.

        Args:
            save_dir: the output folder.
            dtype: the written dtype (default: as trained).
            max_shard_size: passed to ``save_pretrained``.

        Returns:
            The folder.
        """
        from xtuner.dataset.image_text import load_processor, save_processor

        save_dir = Path(save_dir)
        model = self.plain_model(dtype)
        model.save_pretrained(str(save_dir), max_shard_size=max_shard_size,
                              safe_serialization=True)
        del model
        config_file = save_dir / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        _scrub_attn_implementation(config)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                               encoding="utf-8")
        if self.processor_path is not None:
            save_processor(load_processor(self.processor_path), str(save_dir))
        print_log(f"Saved the image-text model to {save_dir}", logger="current")
        return save_dir

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs=None, dtype=None):
        """``xtuner convert pth_to_hf``'s entry: :meth:`save_hf` (LoRA merged)."""
        if dtype is None:
            dtype = torch.float32 if fp32 else torch.float16
        kwargs = dict(save_pretrained_kwargs or {})
        self.save_hf(save_dir, dtype=dtype,
                     max_shard_size=kwargs.get("max_shard_size") or "5GB")
