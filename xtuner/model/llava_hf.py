"""A trained :class:`~xtuner.model.LLaVAModel` as transformers'
``LlavaForConditionalGeneration``.

The Hugging Face model is built from the configs of the three parts and each part's weights
are copied module by module (no key-renaming tables, which transformers 5 broke for v0):
vision tower, projector (v0's ``model.0``/``model.2`` are transformers' ``linear_1``/
``linear_2``), language model and output head. LoRA adapters must be merged first
(:func:`merged_parts`).
"""
from __future__ import annotations

import torch

from xtuner.utils.errors import ConfigError

__all__ = ["merged_parts", "build_llava_hf"]


def _merged(module):
    """``module`` with its LoRA adapters merged (dequantizing 4-bit weights first)."""
    from peft import PeftModel

    if isinstance(module, PeftModel):
        return module.merge_and_unload()
    return module


def merged_parts(model) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """``(llm, vision_tower, projector)`` with adapters merged into plain modules."""
    return _merged(model.llm), _merged(model.visual_encoder), model.projector


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
