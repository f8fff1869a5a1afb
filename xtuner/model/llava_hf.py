"""Export a trained :class:`~xtuner.model.LLaVAModel` (``xtuner convert pth_to_hf
--save-format xtuner|huggingface``).

* ``xtuner`` (v0's layout, what ``xtuner chat --llava DIR`` reads): ``projector/``, and
  ``llm_adapter/`` (LoRA) or the full LLM with its tokenizer at the top (when the LLM
  trained), ``visual_encoder_adapter/`` (LoRA) or ``visual_encoder/`` with its image
  processor (when the tower trained).
* ``huggingface``: transformers' ``LlavaForConditionalGeneration`` and a ``LlavaProcessor``,
  loadable and usable by plain transformers. Adapters are merged; a QLoRA LLM is merged into
  its base loaded in 16 bits (what a QLoRA model is served as). The model is assembled from
  the configs of its three parts and each part's weights are copied module by module (no
  key-renaming tables, which transformers 5 broke for v0).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from xtuner.utils.errors import ConfigError

from .utils import build_from_cfg, is_quantized

__all__ = ["SAVE_FORMATS", "build_llava_hf", "plain_llm", "save_llava", "image_token_id"]

SAVE_FORMATS = ("xtuner", "huggingface")
IMAGE_TOKEN = "<image>"


def build_llava_hf(llm, vision_tower, projector, *, image_token_id: int,
                   visual_select_layer: int, drop_cls_token: bool, image_seq_length: int):
    """Assemble ``LlavaForConditionalGeneration`` from plain (merged) parts.

    Args:
        llm: a ``*ForCausalLM`` without adapters.
        vision_tower: the vision model (e.g. ``CLIPVisionModel``, ``SiglipVisionModel``).
        projector: a two-layer :class:`~xtuner.model.modules.ProjectorModel`.
        image_token_id: the tokenizer's id of the image token.
        visual_select_layer: the tower's hidden state used (``vision_feature_layer``).
        drop_cls_token: whether the class token is dropped (``'default'`` strategy) or not
            (``'full'``).
        image_seq_length: features per image.
    """
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    if projector.config.depth != 2:
        raise ConfigError(f"transformers' Llava projector has two linear layers; this one has "
                          f"projector_depth={projector.config.depth}")
    vision_config = getattr(vision_tower.config, "vision_config", vision_tower.config)
    config = LlavaConfig(
        vision_config=vision_config.to_dict(), text_config=llm.config.to_dict(),
        image_token_id=image_token_id, projector_hidden_act=projector.config.hidden_act,
        vision_feature_layer=visual_select_layer,
        vision_feature_select_strategy="default" if drop_cls_token else "full",
        image_seq_length=image_seq_length, multimodal_projector_bias=projector.config.bias,
        tie_word_embeddings=bool(getattr(llm.config, "tie_word_embeddings", False)))
    dtype = next(llm.parameters()).dtype
    hf = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    parts = [
        (hf.model.vision_tower, vision_tower),
        (hf.model.multi_modal_projector.linear_1, projector.model[0]),
        (hf.model.multi_modal_projector.linear_2, projector.model[2]),
        (hf.model.language_model, llm.get_decoder()),
        (hf.lm_head, llm.get_output_embeddings()),
    ]
    for target, source in parts:
        target.load_state_dict(source.state_dict(), strict=True)
    return hf.eval()


def _merged(module):
    from peft import PeftModel

    return module.merge_and_unload() if isinstance(module, PeftModel) else module


def plain_llm(model, llm_cfg, dtype: torch.dtype):
    """The model's LLM as a plain ``*ForCausalLM`` in ``dtype``, adapters merged.

    A 4-bit LLM cannot hold merged weights: its base is built again from ``llm_cfg`` without
    the quantization config, in ``dtype``, and the trained adapters are merged into that.
    """
    llm = model.llm
    if not is_quantized(llm):
        return _merged(llm).to(dtype)
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    if not isinstance(llm_cfg, dict):
        raise ConfigError("exporting a 4-bit LLM needs its config (model.llm) to rebuild the "
                          "base in 16 bits")
    cfg = {k: v for k, v in dict(llm_cfg).items() if k != "quantization_config"}
    cfg["dtype"] = dtype
    base = build_from_cfg(cfg)
    if len(base.get_input_embeddings().weight) != len(llm.get_input_embeddings().weight):
        base.resize_token_embeddings(len(llm.get_input_embeddings().weight))
    peft_config = copy.deepcopy(llm.peft_config["default"])
    peft_model = get_peft_model(base, peft_config)
    set_peft_model_state_dict(peft_model, get_peft_model_state_dict(llm))
    return peft_model.merge_and_unload().to(dtype)


def image_token_id(tokenizer) -> int:
    """The id of ``<image>`` in ``tokenizer``, added as a special token when missing."""
    from transformers import AddedToken

    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)],
                             special_tokens=True)
    return tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)


def save_llava(model, cfg, save_dir: str | os.PathLike, save_format: str = "xtuner",
               dtype: torch.dtype = torch.float16) -> None:
    """Write ``model`` in ``save_format`` (see the module docstring) to ``save_dir``."""
    if save_format not in SAVE_FORMATS:
        raise ConfigError(f"--save-format {save_format!r}: use one of {', '.join(SAVE_FORMATS)}")
    save_dir = Path(save_dir)
    tokenizer = build_from_cfg(cfg.tokenizer) if cfg.get("tokenizer") is not None else None
    processor_cfg = _image_processor_cfg(cfg)
    image_processor = build_from_cfg(processor_cfg) if processor_cfg is not None else None
    if save_format == "xtuner":
        _save_xtuner(model, save_dir, tokenizer, image_processor, dtype)
        return
    if tokenizer is None or image_processor is None:
        raise ConfigError("--save-format huggingface needs the config's tokenizer and "
                          "image_processor")
    from transformers import LlavaProcessor

    features, drop_cls = model.tokens_per_image, model.drops_cls_token()
    llm_cfg = cfg.model.get("llm")
    llm = plain_llm(model, llm_cfg, dtype)
    token_id = image_token_id(tokenizer)
    if token_id >= len(llm.get_input_embeddings().weight):
        llm.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=True)
    hf = build_llava_hf(llm, _merged(model.visual_encoder).to(dtype),
                        model.projector.to(dtype), image_token_id=token_id,
                        visual_select_layer=model.visual_select_layer, drop_cls_token=drop_cls,
                        image_seq_length=features)
    hf.save_pretrained(str(save_dir))
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, image_token=IMAGE_TOKEN,
        patch_size=getattr(hf.config.vision_config, "patch_size", None),
        vision_feature_select_strategy=hf.config.vision_feature_select_strategy,
        num_additional_image_tokens=1 if drop_cls else 0,
        chat_template=getattr(tokenizer, "chat_template", None))
    processor.save_pretrained(str(save_dir))


def _image_processor_cfg(cfg):
    """The config's image processor: top-level ``image_processor`` or the dataset's."""
    if cfg.get("image_processor") is not None:
        return cfg.image_processor
    dataset = (cfg.get("train_dataloader") or {}).get("dataset") or {}
    return dataset.get("image_processor")


def _save_xtuner(model, save_dir: Path, tokenizer, image_processor, dtype) -> None:
    """v0's layout (read by ``xtuner chat --llava``)."""
    save_dir.mkdir(parents=True, exist_ok=True)
    llm_trains = any(p.requires_grad for p in model.llm.parameters())
    if model.use_lora:
        model.llm.save_pretrained(str(save_dir / "llm_adapter"))
    elif llm_trains:
        model.llm.to(dtype).save_pretrained(str(save_dir))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(save_dir))
    if model.use_visual_encoder_lora:
        model.visual_encoder.save_pretrained(str(save_dir / "visual_encoder_adapter"))
    elif any(p.requires_grad for p in model.visual_encoder.parameters()):
        model.visual_encoder.to(dtype).save_pretrained(str(save_dir / "visual_encoder"))
        if image_processor is not None:
            image_processor.save_pretrained(str(save_dir / "visual_encoder"))
    model.projector.to(dtype).save_pretrained(str(save_dir / "projector"))
