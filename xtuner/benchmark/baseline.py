"""The reference point: the same steps as a plain Hugging Face training loop.

The model is loaded by the config's own ``from_pretrained`` call (same weights, dtype and
quantization) but with ``attn_implementation='sdpa'`` and nothing of xtuner's: transformers
builds the block-diagonal causal mask of the packed rows from their ``position_ids``, the loss is
the model's own cross-entropy over materialized logits, the optimizer is ``torch.optim.AdamW``
(default implementation) under ``torch.autocast`` with the config's AMP dtype (and a
``GradScaler`` for fp16). Activation checkpointing is off for full fine-tuning and on for k-bit
models (what ``peft.prepare_model_for_kbit_training`` does by default).
"""
from __future__ import annotations

import contextlib

import torch

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.engine.config import type_name
from xtuner.model.utils import apply_device_fallbacks, build_from_cfg, is_quantized

from .meter import StepMeter

__all__ = ["run_baseline"]


def _build(cfg):
    from peft import get_peft_model, prepare_model_for_kbit_training

    llm_cfg = apply_device_fallbacks(dict(cfg.model.llm))
    llm_cfg["attn_implementation"] = "sdpa"
    model = build_from_cfg(llm_cfg)
    model.config.use_cache = False
    lora = cfg.model.get("lora")
    if lora is not None:
        if is_quantized(model):
            model = prepare_model_for_kbit_training(model)
        lora = build_from_cfg(dict(lora))
        if lora.target_modules is None:
            from xtuner.model.utils import find_all_linear_names

            lora.target_modules = find_all_linear_names(model)
        model = get_peft_model(model, lora)
    if torch.cuda.is_available() and not is_quantized(model):
        model = model.cuda()
    return model.train()


def _optimizer(cfg, params):
    optimizer = dict(cfg.optim_wrapper.get("optimizer") or {})
    kwargs = {k: optimizer[k] for k in ("lr", "betas", "weight_decay", "eps") if k in optimizer}
    return torch.optim.AdamW(params, **kwargs)


def run_baseline(cfg, dataset, warmup: int, steps: int):
    """Run ``warmup + steps`` plain steps; returns the model's config, the trainable fraction
    and the :class:`StepMeter` that timed them."""
    model = _build(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in params)
    optimizer = _optimizer(cfg, params)
    wrapper = cfg.optim_wrapper
    amp = type_name(wrapper.get("type")) == "AmpOptimWrapper"
    dtype = wrapper.get("dtype") or "float16"
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    max_norm = (wrapper.get("clip_grad") or {}).get("max_norm")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    batch_size = cfg.train_dataloader.batch_size
    # The usual recipe: loss scaling for fp16 only.
    scaler = torch.amp.GradScaler(device.type, enabled=amp and cuda and dtype == torch.float16)
    meter = StepMeter(warmup)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    # Batches are built before the loop: a real loop prepares them in DataLoader workers,
    # so building them here must not count against the baseline.
    batches = []
    for step in range(warmup + steps):
        indices = [(step * batch_size + i) % len(dataset) for i in range(batch_size)]
        batch = default_collate_fn([dataset[i] for i in indices], pad_index=0,
                                   return_hf_format=True)
        batches.append(([n for i in indices for n in dataset.sample_lengths_of(i)],
                        {k: batch[k].pin_memory() if cuda else batch[k]
                         for k in ("input_ids", "labels", "position_ids")}))
    meter.data_start()
    for lengths, batch in batches:
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        meter.start(lengths)
        autocast = (torch.autocast(device.type, dtype=dtype) if amp and cuda
                    else contextlib.nullcontext())
        with autocast:
            loss = model(**inputs).loss
        scaler.scale(loss).backward()
        if max_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        meter.optimizer()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        meter.end()
    meter.stop()
    config = getattr(model, "config", None)
    del model, optimizer, params
    return config, trainable / max(1, total), meter

