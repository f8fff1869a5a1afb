"""``EncoderLLM``: any transformers encoder in front of a causal LM (the seed's ``TSModel``).

The data (see :mod:`xtuner.dataset.media`) already holds, for every media file, as many
context tokens as the encoder outputs features for it; the model encodes the batch's media,
projects the features to the LLM's width and writes them over the context tokens' embeddings,
in order. No sequence changes length, so packed rows keep their boundaries and positions and
varlen attention keeps samples apart as for text. Everything else is
:class:`SupervisedFinetune`: LoRA/QLoRA of the LLM, activation checkpointing, varlen
attention, ``loss_reduction``.

A text-only batch still runs the encoder (on a blank input) and adds ``0 * sum(features)``
to the embeddings: the encoder and projector stay in the autograd graph (DDP sees every
trainable parameter on every rank) and the text embeddings are unchanged.

:meth:`EncoderLLM.save_hf` writes one Hugging Face folder: the LLM (LoRA merged) with its
config, the encoder and projector weights beside it under the ``encoder.``/``projector.``
prefixes in the same safetensors files, the tokenizer and ``encoder_llm.json`` (the wiring);
:meth:`EncoderLLM.from_hf` loads it back, and ``AutoModelForCausalLM.from_pretrained`` loads
its LLM (reporting the encoder weights as unused).
"""
from __future__ import annotations

import copy
import json
from collections import OrderedDict, defaultdict
from pathlib import Path

import torch
from mmengine import print_log

from xtuner.utils.errors import CheckpointError, ConfigError

from .export import _reset_attn_implementation
from .modules import ProjectorConfig, ProjectorModel
from .sft import SupervisedFinetune, varlen_kwargs
from .utils import build_from_cfg, is_quantized

__all__ = ["EncoderLLM", "WIRING_FILE", "ENCODER_PREFIX", "PROJECTOR_PREFIX"]

#: The file of a saved folder that says how encoder, projector and LLM fit together.
WIRING_FILE = "encoder_llm.json"
ENCODER_PREFIX = "encoder."
PROJECTOR_PREFIX = "projector."


def _hidden_size(config) -> int:
    for name in ("hidden_size", "d_model", "embed_dim"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    raise ConfigError(f"cannot tell the feature width of a {type(config).__name__} (no "
                      "hidden_size/d_model/embed_dim); override EncoderLLM.encode")


class EncoderLLM(SupervisedFinetune):
    """An encoder + projector + causal LM trained on chat data with media.

    Args:
        llm: the causal LM (or its config dict), as for :class:`SupervisedFinetune`.
        encoder: any transformers encoder (``dict(type=AutoModel.from_pretrained,
            pretrained_model_name_or_path=...)``, or ``AutoModel.from_config`` for a fresh
            one) whose ``main_input_name`` takes one media tensor per batch row (Wav2Vec2-style
            ``input_values`` for signals); override :meth:`encode` for other call shapes.
        tokenizer: the tokenizer (or its config dict) holding the media tokens (see
            :func:`xtuner.dataset.media.add_special_tokens`); the embeddings are resized
            to it.
        context_token: the token whose embeddings the features replace.
        projector_depth: linear layers of the projector (encoder width -> LLM width);
            ``0``: none (the encoder's width must be the LLM's).
        freeze_llm: keep the LLM's weights fixed (default; with ``llm_lora`` the adapters
            train). ``False``: full fine-tuning.
        freeze_encoder: keep the encoder's weights fixed (default).
        llm_lora: a ``LoraConfig`` (or dict) for the LLM; with a 4-bit LLM this is QLoRA.
        blank_input_shape: the shape of the blank media a text-only batch encodes; default:
            the shortest 1-D signal the encoder's convolutions accept.
        **kwargs: the other arguments of :class:`SupervisedFinetune` (``use_varlen_attn``,
            ``use_activation_checkpointing``, ``loss_reduction``, ...).
    """

    def __init__(self, llm, encoder, tokenizer, context_token: str = "<TS_CONTEXT>",
                 projector_depth: int = 2, freeze_llm: bool = True,
                 freeze_encoder: bool = True, llm_lora=None,
                 blank_input_shape: tuple[int, ...] | None = None, **kwargs):
        tokenizer = build_from_cfg(tokenizer)
        super().__init__(llm, lora=llm_lora, tokenizer=tokenizer, **kwargs)
        # A 4-bit LLM is rebuilt from it in 16 bits to merge the adapters (save_hf).
        self._llm_cfg = dict(llm) if isinstance(llm, dict) else None
        self.tokenizer = tokenizer
        if context_token not in tokenizer.get_vocab():
            raise ConfigError(f"the tokenizer has no {context_token!r} token: build it with "
                              "xtuner.dataset.media.add_special_tokens (as the data does)")
        self.context_token = context_token
        self.context_token_id = int(tokenizer.convert_tokens_to_ids(context_token))
        self.freeze_llm = freeze_llm
        self.freeze_encoder = freeze_encoder
        if freeze_llm:
            for name, param in self.llm.named_parameters():
                if "lora_" not in name:  # adapters of `llm_lora` still train
                    param.requires_grad_(False)
        self.encoder = build_from_cfg(encoder)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        llm_width = self.llm.config.get_text_config().hidden_size
        encoder_width = _hidden_size(self.encoder.config)
        if projector_depth:
            self.projector = ProjectorModel(ProjectorConfig(
                visual_hidden_size=encoder_width, llm_hidden_size=llm_width,
                depth=projector_depth)).to(next(self.encoder.parameters()).dtype)
        elif encoder_width != llm_width:
            raise ConfigError(f"projector_depth=0 needs the encoder's width ({encoder_width}) "
                              f"to be the LLM's ({llm_width}); use a projector")
        else:
            self.projector = None
        self.blank_input_shape = tuple(blank_input_shape or self._shortest_input())
        if self.use_activation_checkpointing and any(
                p.requires_grad for p in self.encoder.parameters()) and getattr(
                self.encoder, "supports_gradient_checkpointing", False):
            self.encoder.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})

    # -- media --------------------------------------------------------------------------------
    def _shortest_input(self) -> tuple[int, ...]:
        from xtuner.dataset.media.time_series import encoder_output_length

        length = 1
        while encoder_output_length(self.encoder.config, length) < 1:
            length *= 2
        return (length,)

    def encode(self, media: list[torch.Tensor]) -> list[torch.Tensor]:
        """The projected features of each media tensor, ``(features, llm_hidden)`` each.

        Media of the same shape are encoded as one batch (the encoder sees no padding, so
        each result is the one the media gets alone)."""
        dtype = next(self.encoder.parameters()).dtype
        device = next(self.encoder.parameters()).device
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, item in enumerate(media):
            groups[tuple(item.shape)].append(i)
        out: list[torch.Tensor | None] = [None] * len(media)
        for indices in groups.values():
            batch = torch.stack([media[i] for i in indices]).to(device=device, dtype=dtype)
            outputs = self.encoder(**{self.encoder.main_input_name: batch})
            hidden = getattr(outputs, "last_hidden_state", None)
            hidden = outputs[0] if hidden is None else hidden
            if self.projector is not None:
                hidden = self.projector(hidden.to(self.projector.dtype))
            for row, i in enumerate(indices):
                out[i] = hidden[row]
        return out  # type: ignore[return-value]

    def _encoder_trains(self) -> bool:
        modules = [self.encoder] + ([self.projector] if self.projector is not None else [])
        return any(p.requires_grad for m in modules for p in m.parameters())

    def embed(self, input_ids: torch.Tensor, media: list[torch.Tensor] | None
              ) -> torch.Tensor:
        """The LLM's input embeddings with the media features over the context tokens."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        is_context = input_ids == self.context_token_id
        needed = int(is_context.sum())
        if media:
            features = torch.cat(self.encode(list(media)))
            if features.shape[0] != needed:
                raise ValueError(f"the batch has {needed} {self.context_token} tokens but its "
                                 f"{len(media)} media give {features.shape[0]} features")
            embeds = embeds.masked_scatter(is_context[..., None],
                                           features.to(embeds.dtype))
        elif needed:
            raise ValueError(f"the batch has {needed} {self.context_token} tokens and no media")
        elif self.training and self._encoder_trains():
            # A text-only batch: the encoder and projector still take part (with weight 0) so
            # every rank's DDP reduction covers the same parameters; the text is unchanged.
            blank = torch.zeros(self.blank_input_shape, device=embeds.device)
            embeds = embeds + 0.0 * self.encode([blank])[0].sum().to(embeds.dtype)
        return embeds

    # -- forward ------------------------------------------------------------------------------
    def _model_inputs(self, data: dict) -> dict:
        input_ids = data["input_ids"]
        inputs = {"inputs_embeds": self.embed(input_ids, data.get("media"))}
        for key in ("attention_mask", "position_ids", "labels", "loss_weights"):
            if data.get(key) is not None:
                inputs[key] = data[key]
        cu_seqlens = self._packed_boundaries(data, input_ids.device)
        if cu_seqlens is not None:
            inputs.update(varlen_kwargs(cu_seqlens, data.get("max_seqlen")))
        return inputs

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, media: list[torch.Tensor] | None = None,
                 attention_mask: torch.Tensor | None = None, **generate_kwargs):
        """Generate from a prompt whose media spans are already expanded (as the tokenize
        function writes them). Returns the new tokens only."""
        embeds = self.embed(input_ids, media)
        return self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask,
                                 **generate_kwargs)

    # -- checkpoints --------------------------------------------------------------------------
    def _saved_keys(self) -> set[str]:
        """What a training checkpoint holds: the trainable weights, and the embedding rows
        (the media tokens' rows are new and randomly initialised)."""
        keys = self._trainable_state_keys()
        embeddings = {id(self.llm.get_input_embeddings().weight)}
        output = self.llm.get_output_embeddings()
        if output is not None:
            embeddings.add(id(output.weight))
        keys |= {name for name, p in self.named_parameters() if id(p) in embeddings}
        return keys

    def _plain_llm(self, dtype: torch.dtype | None):
        """The LLM as a plain transformers model: LoRA merged into a copy; a 4-bit (QLoRA)
        base rebuilt in ``dtype`` (default: the trained embeddings' dtype) with the adapters
        merged and the trained embedding rows (those of
        the media tokens are new) copied in."""
        if not self.use_lora:
            return self.llm
        if not is_quantized(self.llm):
            return copy.deepcopy(self.llm).merge_and_unload()
        from .llava_hf import plain_llm

        if self._llm_cfg is None:
            raise ConfigError("save_hf of a 4-bit LLM needs model.llm as a config dict, to "
                              "rebuild the base in 16 bits")
        dtype = dtype or self.llm.get_input_embeddings().weight.dtype
        merged = plain_llm(self, self._llm_cfg, dtype)
        with torch.no_grad():
            merged.get_input_embeddings().weight.copy_(self.llm.get_input_embeddings().weight)
            head, trained_head = merged.get_output_embeddings(), self.llm.get_output_embeddings()
            if head is not None and trained_head is not None and head.weight is not \
                    merged.get_input_embeddings().weight:
                head.weight.copy_(trained_head.weight)
        return merged

    def save_hf(self, save_dir, dtype: torch.dtype | None = None,
                max_shard_size: str | int = "5GB") -> Path:
        """Write the model as one Hugging Face folder (see the module docstring).

        Args:
            save_dir: the output folder.
            dtype: the dtype of the written weights (default: as trained; a 4-bit LLM is
                written in 16 bits, its adapters merged).
            max_shard_size: passed to ``save_pretrained``.

        Returns:
            The folder.
        """
        save_dir = Path(save_dir)
        llm = self._plain_llm(dtype)
        state = OrderedDict(llm.state_dict())
        state.update((ENCODER_PREFIX + k, v) for k, v in self.encoder.state_dict().items())
        if self.projector is not None:
            state.update((PROJECTOR_PREFIX + k, v)
                         for k, v in self.projector.state_dict().items())
        if dtype is not None:
            state = OrderedDict((k, v.to(dtype) if v.is_floating_point() else v)
                                for k, v in state.items())
        llm.config.use_cache = True  # for generation by whoever loads the folder
        try:
            llm.save_pretrained(str(save_dir), state_dict=state, max_shard_size=max_shard_size)
        finally:
            llm.config.use_cache = False
        _reset_attn_implementation(save_dir)
        self.tokenizer.save_pretrained(str(save_dir))
        wiring = {
            "context_token": self.context_token,
            "encoder_class": type(self.encoder).__name__,
            "encoder_config": self.encoder.config.to_dict(),
            "encoder_prefix": ENCODER_PREFIX,
            "projector_depth": self.projector.config.depth if self.projector is not None else 0,
            "projector_prefix": PROJECTOR_PREFIX,
            "blank_input_shape": list(self.blank_input_shape),
        }
        (save_dir / WIRING_FILE).write_text(json.dumps(wiring, indent=2) + "\n",
                                            encoding="utf-8")
        print_log(f"Saved the encoder-LLM to {save_dir}", logger="current")
        return save_dir

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs=None, dtype=None):
        """``xtuner convert pth_to_hf``'s entry: :meth:`save_hf` (the encoder is part of the
        model, so a LoRA LLM is written merged, not as an adapter)."""
        if dtype is None:
            dtype = torch.float32 if fp32 else torch.float16
        kwargs = dict(save_pretrained_kwargs or {})
        self.save_hf(save_dir, dtype=dtype,
                     max_shard_size=kwargs.get("max_shard_size") or "5GB")

    @classmethod
    def from_hf(cls, path, dtype: torch.dtype | str | None = None, **kwargs) -> EncoderLLM:
        """Load a folder written by :meth:`save_hf`.

        Args:
            path: the folder.
            dtype: load the weights in this dtype (default: as saved).
            **kwargs: other :class:`EncoderLLM` arguments (``freeze_llm``, ``llm_lora``,
                ``use_varlen_attn``, ...) to go on training.
        """
        import transformers
        from safetensors import safe_open
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        wiring_file = path / WIRING_FILE
        if not wiring_file.is_file():
            raise CheckpointError(f"{path}: no {WIRING_FILE}; this is not a folder written by "
                                  "EncoderLLM.save_hf")
        wiring = json.loads(wiring_file.read_text(encoding="utf-8"))
        llm_kwargs = {} if dtype is None else {"dtype": dtype}
        verbosity = transformers.logging.get_verbosity()
        # Its load report lists the encoder/projector weights as unexpected: loaded below.
        transformers.logging.set_verbosity_error()
        try:
            llm = AutoModelForCausalLM.from_pretrained(str(path), **llm_kwargs)
        finally:
            transformers.logging.set_verbosity(verbosity)
        encoder_config = dict(wiring["encoder_config"])
        config = AutoConfig.for_model(encoder_config.pop("model_type"), **encoder_config)
        encoder_cls = getattr(transformers, wiring["encoder_class"], None)
        if encoder_cls is None:
            raise CheckpointError(f"{wiring_file}: transformers has no class "
                                  f"{wiring['encoder_class']!r}")
        encoder = encoder_cls(config)
        model = cls(llm=llm, encoder=encoder, tokenizer=AutoTokenizer.from_pretrained(str(path)),
                    context_token=wiring["context_token"],
                    projector_depth=wiring["projector_depth"],
                    blank_input_shape=tuple(wiring["blank_input_shape"]), **kwargs)
        state: dict[str, torch.Tensor] = {}
        prefixes = (wiring["encoder_prefix"], wiring["projector_prefix"])
        for file in sorted(path.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    if key.startswith(prefixes):
                        state[key] = f.get_tensor(key)
        targets = [(wiring["encoder_prefix"], model.encoder)]
        if model.projector is not None:
            targets.append((wiring["projector_prefix"], model.projector))
        for prefix, module in targets:
            part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            missing, unexpected = module.load_state_dict(part, strict=False)
            if missing or unexpected:
                raise CheckpointError(f"{path}: the {prefix.rstrip('.')} weights do not match "
                                      f"its config (missing {missing[:3]}, unexpected "
                                      f"{unexpected[:3]})")
        if dtype is not None:
            model.encoder.to(dtype)
            if model.projector is not None:
                model.projector.to(dtype)
        return model
