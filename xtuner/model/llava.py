"""``LLaVAModel``: a vision encoder, a projector and a causal LM trained together (v0's API).

Each image goes through the vision tower (any transformers vision model: CLIP, SigLIP, ...);
the hidden states of ``visual_select_layer`` (without the class token, when the tower has
one) go through the projector (v0's layout, so v0 projector weights load) into the LLM's
embedding space, where they replace the image's placeholder in the text (see
:mod:`xtuner.model.multimodal`). Everything else is :class:`SupervisedFinetune`: LoRA/QLoRA
of the LLM, activation checkpointing, varlen attention for packed rows (images included),
``loss_reduction``.

Beyond v0: several images per sample (one ``<image>`` each), packed multimodal rows, text-only
batches that keep the vision tower and projector in the autograd graph without changing the
text (so DDP sees every trainable parameter on every rank), and any vision tower whose class
token is found from its output shape rather than its class name.
"""
from __future__ import annotations

import torch
from mmengine import print_log

from xtuner.registry import BUILDER
from xtuner.utils.errors import ConfigError

from .modules import ProjectorConfig, ProjectorModel
from .multimodal import count_placeholders, splice_features
from .sft import SupervisedFinetune, varlen_kwargs
from .utils import build_from_cfg, find_all_linear_names

__all__ = ["LLaVAModel"]


def _hidden_size(config) -> int:
    config = getattr(config, "vision_config", config)
    return int(config.hidden_size)


class LLaVAModel(SupervisedFinetune):
    """LLaVA-style vision-language fine-tuning.

    Args:
        llm: the causal LM (or its config dict), as for :class:`SupervisedFinetune`.
        visual_encoder: the vision tower (e.g. ``dict(type=CLIPVisionModel.from_pretrained,
            pretrained_model_name_or_path=...)``) or its config dict.
        freeze_llm: keep the LLM's own weights fixed (the pre-training stage; with
            ``llm_lora`` only the adapters train).
        freeze_visual_encoder: keep the tower's weights fixed.
        visual_select_layer: which hidden state of the tower feeds the projector (v0: -2).
        pretrained_pth: a checkpoint of an earlier stage (e.g. the pre-trained projector)
            loaded non-strictly: a ``.pth`` file or a DeepSpeed checkpoint folder.
        projector_depth: linear layers in the projector (v0: 2).
        llm_lora: a ``LoraConfig`` (or dict) for the LLM; with a 4-bit LLM this is QLoRA.
        visual_encoder_lora: a ``LoraConfig`` (or dict) for the vision tower.
        use_activation_checkpointing: as for :class:`SupervisedFinetune` (v0: True); the
            tower is checkpointed too when it trains.
        max_position_embeddings: extend the LLM's context (linear RoPE scaling).
        drop_cls_token: drop the tower's first output token before the projector. ``'auto'``
            (default): drop it when the tower outputs one token more than it has patches
            (CLIP's class token; SigLIP has none).
        **kwargs: the other arguments of :class:`SupervisedFinetune` (``use_varlen_attn``,
            ``tokenizer``, ``use_liger_kernel``, ``loss_reduction``, ...).
    """

    def __init__(self, llm, visual_encoder, freeze_llm=False, freeze_visual_encoder=False,
                 visual_select_layer=-2, pretrained_pth=None, projector_depth=2, llm_lora=None,
                 visual_encoder_lora=None, use_activation_checkpointing=True,
                 max_position_embeddings=None, drop_cls_token="auto", **kwargs):
        if drop_cls_token not in ("auto", True, False):
            raise ConfigError(f"model.drop_cls_token must be 'auto', True or False, got "
                              f"{drop_cls_token!r}")
        super().__init__(llm, lora=llm_lora,
                         use_activation_checkpointing=use_activation_checkpointing,
                         max_position_embeddings=max_position_embeddings, **kwargs)
        self.freeze_llm = freeze_llm
        self.freeze_visual_encoder = freeze_visual_encoder
        self.visual_select_layer = visual_select_layer
        self.drop_cls_token = drop_cls_token
        if freeze_llm:
            for name, param in self.llm.named_parameters():
                if "lora_" not in name:  # adapters of `llm_lora` still train
                    param.requires_grad_(False)
        self.visual_encoder = build_from_cfg(visual_encoder)
        if freeze_visual_encoder:
            self.visual_encoder.requires_grad_(False)
        self.projector = ProjectorModel(ProjectorConfig(
            visual_hidden_size=_hidden_size(self.visual_encoder.config),
            llm_hidden_size=self.llm.config.get_text_config().hidden_size,
            depth=projector_depth)).to(next(self.visual_encoder.parameters()).dtype)
        self.use_visual_encoder_lora = visual_encoder_lora is not None
        if self.use_visual_encoder_lora:
            self._prepare_visual_encoder_lora(visual_encoder_lora)
        if use_activation_checkpointing and any(p.requires_grad for p in
                                                self.visual_encoder.parameters()):
            self.visual_encoder.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        if pretrained_pth is not None:
            self._load_pretrained(pretrained_pth)

    # -- building ---------------------------------------------------------------------------
    def _prepare_visual_encoder_lora(self, lora) -> None:
        from peft import get_peft_model

        if isinstance(lora, dict):
            lora = BUILDER.build(lora)
        if lora.target_modules is None:
            lora.target_modules = find_all_linear_names(self.visual_encoder)
        self.visual_encoder = get_peft_model(self.visual_encoder, lora)

    def _load_pretrained(self, path: str) -> None:
        from .export import load_training_checkpoint

        state = load_training_checkpoint(path)
        result = torch.nn.Module.load_state_dict(self, state, strict=False)
        print_log(f"Loaded {len(state) - len(result.unexpected_keys)} tensors from {path}"
                  + (f" ({len(result.unexpected_keys)} not in this model)"
                     if result.unexpected_keys else ""), logger="current")

    # -- images -----------------------------------------------------------------------------
    def _num_patches(self) -> int | None:
        config = getattr(self.visual_encoder.config, "vision_config", self.visual_encoder.config)
        size, patch = getattr(config, "image_size", None), getattr(config, "patch_size", None)
        return (size // patch) ** 2 if size and patch else None

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(images, tokens, llm_hidden)``: the projected features of a batch of images."""
        dtype = next(self.visual_encoder.parameters()).dtype
        outputs = self.visual_encoder(pixel_values=pixel_values.to(dtype),
                                      output_hidden_states=True)
        hidden = outputs.hidden_states[self.visual_select_layer]
        drop = self.drop_cls_token
        if drop == "auto":
            patches = self._num_patches()
            if patches is None:
                raise ConfigError("model.drop_cls_token='auto' needs the vision config's "
                                  "image_size and patch_size; set drop_cls_token=True/False")
            drop = hidden.shape[1] == patches + 1
        if drop:
            hidden = hidden[:, 1:]
        return self.projector(hidden.to(self.projector.dtype))

    def _measure_image_tokens(self) -> None:
        """Run the tower once on a blank image: how many tokens it outputs and how many
        features reach the LLM."""
        blank = self._blank_image(next(self.projector.parameters()).device)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            dtype = next(self.visual_encoder.parameters()).dtype
            tower_tokens = self.visual_encoder(pixel_values=blank.to(dtype),
                                               output_hidden_states=True).hidden_states[
                self.visual_select_layer].shape[1]
            features = self.image_features(blank).shape[1]
        self.train(was_training)
        self._image_tokens = (int(features), features == tower_tokens - 1)

    @property
    def tokens_per_image(self) -> int:
        """How many features (LLM tokens) one image becomes (measured once)."""
        if getattr(self, "_image_tokens", None) is None:
            self._measure_image_tokens()
        return self._image_tokens[0]

    def drops_cls_token(self) -> bool:
        """Whether the tower's first output token is dropped (``'auto'`` resolved)."""
        if getattr(self, "_image_tokens", None) is None:
            self._measure_image_tokens()
        return self._image_tokens[1]

    def _vision_trains(self) -> bool:
        return any(p.requires_grad for m in (self.visual_encoder, self.projector)
                   for p in m.parameters())

    def _blank_image(self, device) -> torch.Tensor:
        config = getattr(self.visual_encoder.config, "vision_config", self.visual_encoder.config)
        size = int(config.image_size)
        return torch.zeros(1, getattr(config, "num_channels", 3), size, size, device=device)

    # -- forward ----------------------------------------------------------------------------
    def _model_inputs(self, data: dict) -> dict:
        input_ids = data["input_ids"]
        images = count_placeholders(input_ids)
        pixel_values = data.get("pixel_values")
        if images:
            if pixel_values is None or len(pixel_values) != images:
                got = 0 if pixel_values is None else len(pixel_values)
                raise ValueError(f"the batch has {images} <image> placeholders but {got} images")
            features = self.image_features(pixel_values)
        else:
            features = None
        embed = self.llm.get_input_embeddings()
        cu_seqlens = self._packed_boundaries(data, input_ids.device)
        spliced = splice_features(
            input_ids,
            features if features is not None else input_ids.new_zeros((0, 1, 1)),
            embed, labels=data.get("labels"), attention_mask=data.get("attention_mask"),
            loss_weights=data.get("loss_weights"), cumulative_len=cu_seqlens)
        embeds = spliced.inputs_embeds
        if features is None and self.training and self._vision_trains():
            # A text-only batch: the tower and projector still take part (with weight 0), so
            # every rank's DDP reduction covers the same parameters; the text is unchanged.
            blank = self.image_features(self._blank_image(embeds.device))
            embeds = embeds + 0.0 * blank.sum().to(embeds.dtype)
        inputs = {"inputs_embeds": embeds, "position_ids": spliced.position_ids}
        for key in ("labels", "attention_mask", "loss_weights"):
            value = getattr(spliced, key)
            if value is not None:
                inputs[key] = value
        if spliced.cumulative_len is not None:
            inputs.update(varlen_kwargs(spliced.cumulative_len))
        return inputs

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, **generate_kwargs):
        """Generate from a prompt holding one ``IMAGE_TOKEN_INDEX`` per image: the LLM's
        ``generate`` on the spliced embeddings. Returns the new tokens only."""
        data = {"input_ids": input_ids, "pixel_values": pixel_values,
                "attention_mask": attention_mask}
        inputs = self._model_inputs(data)
        return self.llm.generate(inputs_embeds=inputs["inputs_embeds"],
                                 attention_mask=inputs.get("attention_mask"),
                                 **generate_kwargs)

    def _saved_keys(self) -> set[str]:
        """The trainable weights only: projector, adapters, and whatever is unfrozen (frozen
        towers and LLMs come from their own folders)."""
        return self._trainable_state_keys()
