"""``SupervisedFinetune``: the mmengine model that fine-tunes a causal LM (XTuner v0's API).

Full fine-tuning, LoRA and QLoRA (bitsandbytes 4-bit + LoRA) of any
``AutoModelForCausalLM``; packed rows with variable-length attention; adapter-only
checkpoints for LoRA; ``to_hf`` export.
"""
from __future__ import annotations

import copy
import logging
import math
from collections import OrderedDict

import torch
from mmengine import print_log
from mmengine.model import BaseModel

from xtuner.parallel.sequence import (
    check_heads_for_sequence_parallel,
    get_data_parallel_world_size,
    get_sequence_parallel_group,
    get_sequence_parallel_world_size,
    register_sequence_parallel_attention,
    shard_for_sequence_parallel,
)
from xtuner.registry import BUILDER
from xtuner.utils.errors import ConfigError

from .attention import register_varlen_attention
from .checkpointing import (
    ActivationCheckpointingPlan,
    checkpointable_layers,
    parse_memory,
    set_plain_layers,
)
from .kernels import apply_liger_kernels, liger_loss_kwargs
from .loss import (
    check_loss_reduction,
    shifted_weighted_cross_entropy,
    target_mask,
    weighted_cross_entropy,
)
from .quantization import base_compute_dtype, keep_4bit_layers_trainable, prepare_kbit_model
from .utils import apply_device_fallbacks, build_from_cfg, find_all_linear_names, is_quantized

__all__ = ["SupervisedFinetune"]


def _build_llm(llm, max_position_embeddings):
    if isinstance(llm, torch.nn.Module):
        return llm
    cfg = apply_device_fallbacks(dict(llm))
    cfg = _prepare_for_zero3(cfg)
    if max_position_embeddings is not None:
        cfg = _extend_context(cfg, max_position_embeddings)
    return build_from_cfg(cfg)


def _checkpointing_mode(value):
    """``'auto'`` is a plan on a GPU; on the CPU memory is not measured and nothing is
    checkpointed."""
    if value == "auto":
        return "auto" if torch.cuda.is_available() else False
    if value not in (True, False, None):
        raise ConfigError(f"model.use_activation_checkpointing must be True, False or "
                          f"'auto', got {value!r}")
    return bool(value)


def _zero3_dtype():
    """The half dtype a ZeRO-3 run trains in (from the DeepSpeed config), or None."""
    from transformers.integrations import is_deepspeed_zero3_enabled
    from transformers.integrations.deepspeed import deepspeed_config

    if not is_deepspeed_zero3_enabled() or not torch.cuda.is_available():
        return None
    config = deepspeed_config() or {}
    if (config.get("bf16") or {}).get("enabled") is True:
        return torch.bfloat16
    if (config.get("fp16") or {}).get("enabled") is True:
        return torch.float16
    return None


def _prepare_for_zero3(cfg: dict) -> dict:
    """ZeRO-3 partitions the trainable parameters into one flat buffer per dtype group and
    requires them all to share the run's dtype: load the model in it, and for QLoRA store the
    4-bit weights in it too, so ZeRO-3 can partition them (QLoRA + ZeRO-3)."""
    dtype = _zero3_dtype()
    if dtype is None:
        return cfg
    quant = cfg.get("quantization_config")
    if quant is not None:
        quant = dict(quant) if isinstance(quant, dict) else quant
        if isinstance(quant, dict):
            quant.update(bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype)
        else:
            quant.bnb_4bit_compute_dtype = dtype
            quant.bnb_4bit_quant_storage = dtype
        cfg = dict(cfg, quantization_config=quant)
    return dict(cfg, dtype=dtype)


def _extend_context(cfg: dict, max_position_embeddings: int) -> dict:
    """Linear RoPE scaling so the model covers ``max_position_embeddings`` (v0 behaviour)."""
    from transformers import AutoConfig

    path = cfg.get("pretrained_model_name_or_path")
    config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.get("trust_remote_code"))
    old = getattr(config, "max_position_embeddings", None)
    if old and max_position_embeddings > old:
        factor = math.ceil(max_position_embeddings / old)
        # transformers 5 keeps RoPE settings (theta included) in `rope_parameters`.
        params = dict(getattr(config, "rope_parameters", None) or {})
        params.update(rope_type="linear", factor=float(factor))
        config.rope_parameters = params
        config.max_position_embeddings = max_position_embeddings
        cfg["config"] = config
        print_log(f"Extended the context from {old} to {max_position_embeddings} tokens with "
                  f"linear RoPE scaling x{factor}", logger="current")
    return cfg


def _count_targets(data: dict) -> int:
    """Trained targets in a batch: given by the train loop, else counted."""
    if data.get("num_targets") is not None:
        return int(data["num_targets"])
    return int(target_mask(data["labels"]).sum())


def varlen_kwargs(cu_seqlens: torch.Tensor, max_seqlen: int | None = None) -> dict:
    """The keyword arguments transformers forwards to the attention function (flash/varlen)
    for a packed row with sample boundaries ``cu_seqlens``."""
    if max_seqlen is None:
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return dict(cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens,
                max_length_q=int(max_seqlen), max_length_k=int(max_seqlen))


def _unscaled(loss: torch.Tensor, denominator: float) -> torch.Tensor:
    """The per-token mean for the log, from a loss scaled for the optimizer step."""
    return loss.detach() / denominator if denominator else loss.detach()


class SupervisedFinetune(BaseModel):
    """Supervised fine-tuning of a causal language model.

    Args:
        llm: the model, or a config dict building it (usually
            ``dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=...)``).
        lora: a ``peft.LoraConfig`` (or its config dict) to train LoRA adapters instead of the
            full model. ``target_modules=None`` adapts every linear layer except the output head.
            With a 4-bit/8-bit model this is QLoRA.
        peft_model: a checkpoint of adapter weights to start from.
        use_activation_checkpointing: recompute activations in the backward pass instead of
            keeping them (saves memory, costs up to a third more compute). ``'auto'`` (default):
            on a GPU, checkpoint only as many decoder layers as needed to stay under
            ``activation_memory_budget`` (measured during the first steps, see
            :mod:`xtuner.model.checkpointing`); off on the CPU. ``True``: every layer (v0's
            default); ``False``: none.
        activation_memory_budget: the peak memory ``'auto'`` aims at (GiB as a number, or a
            string such as ``'34GB'``); default 90% of the GPU's memory.
        reentrant_checkpointing: recompute with torch's reentrant checkpoint (default, v0's
            kind): a checkpointed layer's forward then builds no autograd graph, which takes
            the host less time per layer than the non-reentrant kind -- what counts when the
            step is bound by launching kernels, as QLoRA's is (W2 under an 8 GiB cap, every
            layer checkpointed: 3.1k tokens/s against 2.8k on one H200). Same losses and
            gradients; the embeddings' output is made to require grad so frozen inputs work.
            ``False``: torch's non-reentrant checkpoint, which DDP with
            ``find_unused_parameters=True`` needs.
        use_torch_compile: compile each decoder layer with ``torch.compile`` (regional
            compilation: the element-wise work around the matmuls is fused, so far fewer
            kernels are launched; the first steps are slower while it compiles). ``True``, or a
            dict of ``torch.compile`` arguments. Shapes are compiled dynamic
            (``dynamic=True`` unless the dict says otherwise): packed rows change their
            length, sample count and longest sample from step to step, and compiling each new
            shape anew ran into torch's recompile limit within 30 steps.
        use_varlen_attn: packed rows carry several samples; attention stays within each sample.
        tokenizer: the tokenizer (or its config); the embeddings are resized when it has more
            tokens than the model.
        max_position_embeddings: extend the context with linear RoPE scaling.
        use_liger_kernel: fused liger kernels (fused linear cross-entropy, RMSNorm, SwiGLU;
            with ``use_torch_compile`` the fused loss alone, the compiled layers fusing the
            rest): ``'auto'`` (on with CUDA for supported models), ``True`` (required) or
            ``False``.
        adapters_16bit: keep the LoRA adapters in the 16-bit dtype the base model computes in
            (QLoRA: ``bnb_4bit_compute_dtype``) instead of peft's float32, so autocast has no
            adapter weight to cast in each forward pass (and recomputed forward). The
            optimizer must then keep float32 master weights:
            ``AmpOptimWrapper(master_weights=True)``, which ``xtuner train`` sets with it, or
            DeepSpeed. Same losses and gradients for a step of one micro-batch on one
            process; accumulated micro-batches and DDP add the gradients up in 16-bit. A base
            that computes in float32 keeps float32 adapters. Needs ``lora``. Off by default:
            ``xtuner train`` ran no faster with it on W2.
        fused_lora: QLoRA's adapted layers run their train-mode forward and backward as one
            autograd function each (the 4-bit base matmul and the LoRA branch sharing the
            input cast, no clone of the base output; see :mod:`xtuner.model.fused_lora`)
            instead of peft's chain of sub-modules: fewer kernels and less host work per
            layer. Same adapters, state dict, dropout masks and sums as peft's, up to
            rounding; eval passes and the cases it does not cover use peft's forward (DoRA,
            adapter biases, ``use_torch_compile`` and ZeRO-3 keep peft's layers, logged).
            Default True; ``False``: peft's layers.
        activations_16bit: QLoRA: keep the hidden states between layers in the 16-bit
            dtype the model was loaded in (as in a model that is not quantized) instead of
            the float32 that peft's ``prepare_model_for_kbit_training`` gives them (its
            float32 embedding output and norms). Halves what a checkpointed layer keeps and
            takes the casts around each 4-bit matmul out; the residual stream is rounded to
            16-bit. ``'auto'`` (default): on when the 4-bit layers compute in bfloat16 (whose
            range is float32's); off in float16, whose range a residual stream summed over
            many layers can exceed (XTuner v0's QLoRA configs: peft's float32 stream, as in
            v0); the memory plan (``--memory-budget``) turns it on where it needs the memory.
            ``True`` (QLoRA only) or ``False``.
        loss_reduction: how the loss of an optimizer step is normalised (see
            :mod:`xtuner.model.loss`): ``'token'`` (default: mean over every trained token
            of the step, across accumulation steps and ranks), ``'sample'`` (each sample
            weighs the same), ``'square'`` (weight ``1/sqrt(n)`` for a sample of ``n``
            trained tokens) or ``'v0'`` (XTuner v0's per-micro-batch mean).
    """

    def __init__(self, llm, lora=None, peft_model=None, use_activation_checkpointing="auto",
                 use_varlen_attn=False, tokenizer=None, max_position_embeddings=None,
                 use_liger_kernel="auto", activation_memory_budget=None,
                 use_torch_compile=False, loss_reduction="token",
                 reentrant_checkpointing=True, adapters_16bit=False, fused_lora=True,
                 activations_16bit="auto"):
        super().__init__()
        if activations_16bit not in (True, False, "auto"):
            raise ConfigError(f"model.activations_16bit={activations_16bit!r}: use 'auto', "
                              "True or False")
        self.fused_lora = bool(fused_lora)
        self.use_torch_compile = use_torch_compile
        self.adapters_16bit = bool(adapters_16bit)
        if self.adapters_16bit and lora is None:
            raise ConfigError("model.adapters_16bit=True keeps LoRA adapters in 16-bit, and "
                              "this model trains none (no lora / llm_lora); add LoRA or "
                              "remove adapters_16bit")
        self.reentrant_checkpointing = bool(reentrant_checkpointing)
        self.loss_reduction = check_loss_reduction(loss_reduction)
        self.llm = _build_llm(llm, max_position_embeddings)
        # bitsandbytes' CPU inference layout would break training after an eval pass.
        keep_4bit_layers_trainable(self.llm)
        self.llm.config.use_cache = False
        self.use_varlen_attn = use_varlen_attn
        # The attention backend this class selected (None: the model's own); DPO's reference
        # model gets the same one.
        self.attn_implementation = None
        if use_varlen_attn:
            # Samples packed in one row must not see each other: a dedicated attention
            # backend receives their boundaries from `forward` (see xtuner.model.attention).
            self.attn_implementation = register_varlen_attention()
            self.llm.set_attn_implementation(self.attn_implementation)
        self.sequence_parallel_size = get_sequence_parallel_world_size()
        if self.sequence_parallel_size > 1:
            use_liger_kernel = self._prepare_sequence_parallel(use_liger_kernel)
        # Before PEFT wraps the model: the kernels replace modules of the base model.
        self.use_liger_kernel = apply_liger_kernels(self.llm, use_liger_kernel,
                                                    layer_kernels=not use_torch_compile)
        if tokenizer is not None:
            self._resize_embeddings(build_from_cfg(tokenizer))
        checkpointing = _checkpointing_mode(use_activation_checkpointing)
        self.use_activation_checkpointing = checkpointing
        self.use_lora = lora is not None
        # QLoRA: what keeps the hidden states in float32 (xtuner.model.quantization)
        self.float32_hidden_states = None
        if self.use_lora:
            self._prepare_lora(lora, bool(checkpointing))
        # The setting as given: the memory plan may turn 'auto' on, never an explicit False.
        self.activations_16bit_mode = activations_16bit
        self.activations_16bit = self._hidden_states_16bit(activations_16bit)
        if self.activations_16bit:
            self.keep_hidden_states_16bit()
        self.checkpointing_plan = None
        if checkpointing:
            self.gradient_checkpointing_enable()
        if checkpointing == "auto":
            try:
                budget = parse_memory(activation_memory_budget)
            except ValueError as exc:
                raise ConfigError(f"model.activation_memory_budget: {exc}") from None
            self.checkpointing_plan = ActivationCheckpointingPlan(self.llm, budget)
        if use_torch_compile:
            user = {} if use_torch_compile is True else use_torch_compile
            self._compile_layers({"dynamic": True, **user})
        if peft_model is not None:
            self._load_adapter(peft_model)

    def _prepare_sequence_parallel(self, use_liger_kernel):
        """Select the sequence-parallel attention backend (it wraps the current one); returns
        the liger setting to apply (liger's fused loss is not wired for the shard's
        pre-shifted labels here, so it stays off)."""
        size = self.sequence_parallel_size
        check_heads_for_sequence_parallel(self.llm.config, size)
        current = getattr(self.llm.config, "_attn_implementation", None)
        self.attn_implementation = register_sequence_parallel_attention(current)
        self.llm.set_attn_implementation(self.attn_implementation)
        print_log(f"Sequence parallel: each sequence split over {size} ranks "
                  f"(attention: {self.attn_implementation}); data-parallel size "
                  f"{get_data_parallel_world_size()}", logger="current")
        if use_liger_kernel not in (False, None, "auto"):
            raise ConfigError(f"model.use_liger_kernel={use_liger_kernel!r} does not work with "
                              f"sequence_parallel_size={size} yet; set it to 'auto' or False")
        if use_liger_kernel == "auto":
            print_log(f"sequence_parallel_size={size}: liger kernels stay off",
                      logger="current")
        return False

    def _sequence_parallel_group(self):
        """The group to split sequences over: only while training with
        ``sequence_parallel_size > 1`` (evaluation and generation run whole sequences)."""
        if self.sequence_parallel_size == 1 or not self.training:
            return None
        if get_sequence_parallel_world_size() != self.sequence_parallel_size:
            raise RuntimeError(f"the model was built for sequence_parallel_size="
                               f"{self.sequence_parallel_size} but the run now has "
                               f"{get_sequence_parallel_world_size()}")
        return get_sequence_parallel_group()

    def _compile_layers(self, kwargs: dict) -> None:
        layers = checkpointable_layers(self.llm)
        if not layers:
            raise ConfigError("model.use_torch_compile: this model has no decoder layers "
                              "transformers can address one by one")
        for layer in layers:
            layer.compile(**kwargs)
        print_log(f"torch.compile: {len(layers)} decoder layers", logger="current")

    def init_weights(self) -> None:
        """Nothing to do: weights come from ``from_pretrained`` (mmengine's default would
        compute the mean of every parameter, which fails on 4-bit weights)."""

    # -- building ---------------------------------------------------------------------------
    def _resize_embeddings(self, tokenizer) -> None:
        vocab = self.llm.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > vocab:
            # New rows start at the mean of the old ones (transformers' mean_resizing).
            self.llm.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64,
                                             mean_resizing=True)
            print_log(f"Resized the embeddings from {vocab} to "
                      f"{self.llm.get_input_embeddings().weight.shape[0]} rows for "
                      f"{len(tokenizer)} tokens", logger="current")

    def _prepare_lora(self, lora, use_activation_checkpointing: bool) -> None:
        from peft import get_peft_model

        # A copy: the caller's config is left as given (target modules, custom layers).
        lora = BUILDER.build(lora) if isinstance(lora, dict) else copy.deepcopy(lora)
        if is_quantized(self.llm):
            # Freezes the quantized base and casts norms to fp32 (QLoRA); the frozen
            # embeddings and head stay 16-bit (same values, half the memory).
            self.llm, saved, self.float32_hidden_states = prepare_kbit_model(
                self.llm, use_activation_checkpointing)
            if saved:
                print_log(f"QLoRA: frozen embeddings and output head kept in 16-bit "
                          f"({saved / 2**30:.2f} GiB less)", logger="current")
        if lora.target_modules is None:
            lora.target_modules = find_all_linear_names(self.llm)
        fused = self.fused_lora and is_quantized(self.llm)
        unfused_because = fused and self._peft_layers_needed(lora)
        if unfused_because:
            print_log(f"model.fused_lora: {unfused_because}; peft's LoRA layers run",
                      logger="current")
            fused = False
        if fused:
            from .fused_lora import FusedLoraLinear4bit, fused_lora_layers  # imports bnb

            lora._register_custom_module(fused_lora_layers())
        # Under ZeRO-3 the adapters must share the base model's dtype (see _prepare_for_zero3);
        # elsewhere peft keeps them in fp32 for stable updates.
        self.llm = get_peft_model(self.llm, lora,
                                  autocast_adapter_dtype=_zero3_dtype() is None)
        if fused:
            layers = sum(isinstance(m, FusedLoraLinear4bit) for m in self.llm.modules())
            print_log(f"QLoRA: {layers} adapted 4-bit layers fused (model.fused_lora=False for "
                      "peft's layers)", logger="current")
        if self.adapters_16bit:
            self._cast_adapters()

    def _hidden_states_16bit(self, mode) -> bool:
        """Whether ``activations_16bit`` (``True``, ``False`` or ``'auto'``) turns peft's
        float32 hidden states to 16-bit here."""
        if mode != "auto":
            return bool(mode)
        if self.float32_hidden_states is None:
            return False  # not QLoRA, or peft's stream is not float32: nothing to do
        dtype = base_compute_dtype(self.llm)
        if dtype == torch.bfloat16:
            return True
        if dtype == torch.float16:
            print_log("activations_16bit: QLoRA computing in float16 keeps peft's float32 hidden "
                      "states (their sum over the layers can exceed float16's range where "
                      "bfloat16's and float32's hold it); model.activations_16bit=True keeps "
                      "them in float16, faster and smaller", logger="current")
        return False

    def keep_hidden_states_16bit(self) -> None:
        """Undo peft's float32 hidden states (QLoRA only): ``activations_16bit``, or the
        memory plan's lever of that name."""
        if self.float32_hidden_states is None:
            raise ConfigError("model.activations_16bit=True applies to QLoRA (a 4-bit/8-bit "
                              "llm loaded in 16-bit, with lora), whose hidden states peft "
                              "keeps in float32; this model's stay in its weights' dtype: "
                              "remove activations_16bit")
        self.float32_hidden_states.remove()
        self.float32_hidden_states = None
        self.activations_16bit = True
        print_log("activations_16bit: QLoRA's hidden states stay in "
                  f"{self.llm.get_input_embeddings().weight.dtype} (peft's float32 embedding "
                  "output and norms undone)", logger="current")

    def _peft_layers_needed(self, lora) -> str | None:
        """Why the fused QLoRA layers would never run with ``lora`` here (None: they can)."""
        if self.use_torch_compile:
            return "use_torch_compile compiles peft's layers"
        if _zero3_dtype() is not None:
            return "ZeRO-3 partitions the adapters"
        if lora.use_dora:
            return "use_dora"
        if getattr(lora, "lora_bias", False):
            return "lora_bias"
        return None

    def _cast_adapters(self) -> None:
        """``adapters_16bit``: the float32 LoRA weights to the base's 16-bit compute dtype."""
        dtype = base_compute_dtype(self.llm)
        if dtype is None:
            print_log("adapters_16bit: the base model computes in float32; the LoRA adapters "
                      "stay float32", logger="current", level=logging.WARNING)
            return
        cast = 0
        for name, param in self.llm.named_parameters():
            if param.requires_grad and "lora_" in name and param.dtype == torch.float32:
                param.data = param.data.to(dtype)
                cast += param.numel()
        print_log(f"adapters_16bit: {cast / 1e6:.1f}M LoRA parameters in {dtype}",
                  logger="current")

    def gradient_checkpointing_enable(self, offload: bool | None = None) -> None:
        """Turn on activation checkpointing (reentrant unless ``reentrant_checkpointing`` is
        False).

        Args:
            offload: keep the checkpointed layers' inputs in pinned host memory until the
                backward pass (transformers' ``offload``, torch's ``save_on_cpu``). ``None``
                (default): as when checkpointing was last turned on (off the first time), so
                a hook that pauses checkpointing to generate gets the memory plan's back.
        """
        if offload is None:
            offload = getattr(self, "_offload_checkpointed_inputs", False)
        self._offload_checkpointed_inputs = offload
        reentrant = getattr(self, "reentrant_checkpointing", True)
        # Start without the hooks that make the embeddings' output require grad (transformers
        # and peft add them, and each call would add them again).
        self.llm.disable_input_require_grads()
        # transformers 5.2x renamed the method; older 5.x releases only have the old name.
        kwargs = {"use_reentrant": reentrant}
        if hasattr(self.llm, "activation_checkpointing_enable"):
            self.llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs,
                                                     offload=offload)
        else:
            self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs,
                                                   offload=offload)
        if not reentrant:
            # Only the reentrant kind needs the hooks; with them the backward pass would also
            # run through frozen parts before the first trained weight (a frozen vision tower).
            self.llm.disable_input_require_grads()
        elif not getattr(self.llm, "_require_grads_hooks", None):
            # A reentrant segment passes gradients only when an input requires them: frozen
            # embeddings (LoRA) must still give an output that does. transformers hooks models
            # fed input_ids; not every model.
            self.llm.enable_input_require_grads()
        plan = getattr(self, "checkpointing_plan", None)
        if plan is not None:  # back to the layers 'auto' chose, not all of them
            set_plain_layers(plan.layers, plan.plain)

    def use_non_reentrant_checkpointing(self) -> None:
        """Recompute with torch's non-reentrant checkpoint from now on: DDP that looks for
        unused parameters cannot follow the reentrant kind (it would mark a parameter used
        inside a checkpointed layer ready twice)."""
        self.reentrant_checkpointing = False
        if self.is_checkpointing_activations:
            self.gradient_checkpointing_enable()

    def fit_activation_checkpointing(self, peak_bytes: int, held_bytes: int | None = None
                                     ) -> None:
        """``'auto'`` mode: refit the checkpointed layers to the budget after a training step
        whose peak allocated memory was ``peak_bytes`` and which left ``held_bytes``
        allocated (called by :class:`~xtuner.engine.hooks.ActivationCheckpointingHook`; see
        :meth:`~xtuner.model.checkpointing.ActivationCheckpointingPlan.update`)."""
        if self.checkpointing_plan is not None:
            self.checkpointing_plan.update(peak_bytes, held_bytes)

    def gradient_checkpointing_disable(self) -> None:
        """Turn off activation checkpointing (e.g. while generating in a hook)."""
        disable = getattr(self.llm, "activation_checkpointing_disable", None)
        (disable or self.llm.gradient_checkpointing_disable)()

    @property
    def is_checkpointing_activations(self) -> bool:
        """Whether activation checkpointing is on."""
        value = getattr(self.llm, "is_activation_checkpointing", None)
        if value is None:  # transformers releases before the rename
            value = getattr(self.llm, "is_gradient_checkpointing", False)
        return bool(value)

    def _load_adapter(self, path: str) -> None:
        from mmengine.runner import load_checkpoint

        load_checkpoint(self, path, map_location="cpu", strict=False, logger="current")

    # -- forward ----------------------------------------------------------------------------
    def forward(self, data, data_samples=None, mode="loss"):
        """mmengine's entry: ``mode`` is ``'loss'``, ``'predict'`` or ``'tensor'``."""
        if mode == "loss":
            return self.compute_loss(data)
        if mode == "predict":
            return self.predict(data)
        if mode == "tensor":
            return self._forward_llm(data)
        raise NotImplementedError(f"unknown forward mode '{mode}'")

    def _model_inputs(self, data: dict) -> dict:
        """The LLM's keyword arguments for a collated batch."""
        inputs = {k: data[k] for k in ("input_ids", "attention_mask", "position_ids", "labels")
                  if data.get(k) is not None}
        cu_seqlens = self._packed_boundaries(data, inputs["input_ids"].device)
        if cu_seqlens is not None:
            inputs.update(varlen_kwargs(cu_seqlens, data.get("max_seqlen")))
        return inputs

    def _packed_boundaries(self, data: dict, device) -> torch.Tensor | None:
        """The sample boundaries of a packed batch (one row), when attention must keep to
        them."""
        if not self.use_varlen_attn or data.get("cumulative_len") is None:
            return None
        cu_seqlens = data["cumulative_len"]
        if isinstance(cu_seqlens, (list, tuple)):
            if len(cu_seqlens) != 1:
                raise ValueError("varlen batches must be concatenated into one row")
            cu_seqlens = cu_seqlens[0]
        return cu_seqlens.to(device=device, dtype=torch.int32)

    def _forward_llm(self, data: dict, **loss_kwargs):
        inputs = self._model_inputs(data)
        inputs.pop("loss_weights", None)  # only the 'sample'/'square' path uses them
        if "labels" in inputs:
            inputs.update(loss_kwargs)
            if self.use_liger_kernel:
                inputs.update(liger_loss_kwargs())
        return self.llm(**inputs)

    def compute_loss(self, data: dict) -> dict:
        """Cross-entropy of the batch, normalised as ``loss_reduction`` says.

        The train loop adds ``loss_scale`` (and ``loss_weights`` for ``sample``/``square``)
        to each batch; without them (evaluation, direct calls) the loss is the mean over the
        batch's trained tokens. ``log_loss`` is that mean in every case, for the log.
        """
        plan = self.checkpointing_plan
        measure = plan is not None and plan.measuring and self.training
        if measure:
            # the tokens this rank runs (a 1/N shard with sequence parallelism)
            plan.note_forward_start(data["input_ids"].numel() // self.sequence_parallel_size)
        scale = data.get("loss_scale") if self.loss_reduction != "v0" else None
        group = self._sequence_parallel_group()
        if group is not None:
            loss, log_loss = self._sequence_parallel_loss(data, group, scale)
        elif scale is None:
            loss = self._forward_llm(data).loss
            log_loss = loss
        elif self.loss_reduction == "token":
            # transformers' (and liger's) loss sums over the targets and divides by
            # `num_items_in_batch`: here the step's count spread over its micro-batches.
            # A step without any trained token has scale 0: its loss is 0.
            loss = self._forward_llm(data, num_items_in_batch=1.0 / scale if scale else
                                     math.inf).loss
            log_loss = _unscaled(loss, scale * _count_targets(data))
        else:
            inputs = self._model_inputs(data)
            labels = inputs.pop("labels")
            weights = inputs.pop("loss_weights", data["loss_weights"])
            logits = self.llm(**inputs).logits
            loss = weighted_cross_entropy(logits, labels, weights) * scale
            log_loss = _unscaled(loss, scale * float(weights.sum()))
        if measure:
            plan.note_forward_end()
        return {"loss": loss, "log_loss": log_loss}

    def _sequence_parallel_loss(self, data: dict, group, scale):
        """This rank's share of the loss with sequence parallelism: the sum over its shard's
        targets times ``scale``, the same factor as without sequence parallelism.

        The train loop's ``scale`` already divides by the step's global count of targets
        (each sequence-parallel group's counted once) and undoes the average over all ranks
        that DDP/DeepSpeed apply, so the summed shards give the gradient of ``N = 1``. Without
        it (``loss_reduction='v0'``, direct calls) the scale is ``N / targets of the batch``:
        averaging over the ``N`` ranks of a group gives the batch's mean (v0's loss).
        """
        inputs = self._model_inputs(data)
        labels = inputs.pop("labels")
        weights = inputs.pop("loss_weights", data.get("loss_weights"))
        weighted = scale is not None and self.loss_reduction in ("sample", "square")
        if weighted:
            denominator = float(weights.sum())
        else:
            weights, denominator = None, float(_count_targets(data))
        if scale is None:
            scale = self.sequence_parallel_size / denominator if denominator else 0.0
        shard = shard_for_sequence_parallel(inputs, group, labels=labels, loss_weights=weights)
        if weighted:
            logits = self.llm(**shard.inputs).logits
            local = shifted_weighted_cross_entropy(logits, shard.shift_labels,
                                                   shard.shift_weights)
            loss = local * scale
        else:
            # transformers' loss takes the pre-shifted labels (`shift_labels`) as they are
            loss = self.llm(**shard.inputs, labels=shard.shift_labels,
                            shift_labels=shard.shift_labels,
                            num_items_in_batch=1.0 / scale if scale else math.inf).loss
            local = loss.detach() / scale if scale else loss.detach() * 0
        total = local.detach().clone()
        torch.distributed.all_reduce(total, group=group)
        return loss, (total / denominator if denominator else total)

    def parse_losses(self, losses: dict):
        """The loss to back-propagate, and the per-token mean of the micro-batch for the log
        (the back-propagated value is scaled for the whole optimizer step)."""
        return losses["loss"], OrderedDict(loss=losses["log_loss"].detach())

    @torch.no_grad()
    def predict(self, data: dict) -> list:
        """Logits per sample (mmengine's predict mode)."""
        inputs = self._model_inputs(data)
        inputs.pop("labels", None)
        logits = self.llm(**inputs).logits
        return [{"logits": row} for row in logits]

    # -- checkpoints ------------------------------------------------------------------------
    def _trainable_state_keys(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def _saved_keys(self) -> set[str] | None:
        """The weights a training checkpoint holds, or None for all of them: with LoRA the
        trainable (adapter) weights, so checkpoints stay small. Subclasses that freeze parts
        which come from their own folders (LLaVA, encoder + LLM) save what trains."""
        return self._trainable_state_keys() if self.use_lora else None

    def state_dict(self, *args, **kwargs):
        """The weights of :meth:`_saved_keys` (all of them for full fine-tuning)."""
        state = super().state_dict(*args, **kwargs)
        keys = self._saved_keys()
        if keys is None:
            return state
        prefix = kwargs.get("prefix", "")
        keep = {prefix + k for k in keys}
        return OrderedDict((k, v) for k, v in state.items() if k in keep)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a checkpoint written by :meth:`state_dict` (a partial one is complete when it
        holds every key of :meth:`_saved_keys`)."""
        keys = self._saved_keys()
        if keys is None:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = sorted(keys - set(state_dict))
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"checkpoint mismatch: missing {missing[:5]}, "
                               f"unexpected {result.unexpected_keys[:5]}")
        return result

    def __getattr__(self, name: str):
        # v0 behaviour: `model.generate(...)` etc. reach the wrapped LLM.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.llm, name)

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs=None, dtype=None):
        """Write the model as a Hugging Face model (full fine-tuning, with the tokenizer of
        ``cfg.tokenizer``) or as a PEFT adapter (LoRA/QLoRA), v0's API.

        Args:
            cfg: the training config (its ``tokenizer`` is saved with a full model).
            save_dir: the output directory.
            fp32: keep float32 (v0's flag); otherwise float16, or ``dtype`` when given.
            save_pretrained_kwargs: passed to ``save_pretrained`` (``max_shard_size``,
                ``safe_serialization``...).
            dtype: the dtype to write (overrides ``fp32``).

        The exported weights are cast in place. See :func:`xtuner.model.export.save_hf`.
        """
        from .export import save_hf

        if dtype is None:
            dtype = torch.float32 if fp32 else torch.float16
        print_log(f"Saving the {'adapter' if self.use_lora else 'model'} "
                  f"({str(dtype).replace('torch.', '')}) to {save_dir}", logger="current")
        save_hf(self, cfg, save_dir, dtype=dtype, save_pretrained_kwargs=save_pretrained_kwargs)


