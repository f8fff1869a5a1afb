"""``SupervisedFinetune(adapters_16bit=True)``: the LoRA adapters in the base's 16-bit compute
dtype give, under autocast, the loss and adapter gradients of peft's float32 adapters holding
the same values (autocast multiplies those in 16-bit too), bit for bit."""
from __future__ import annotations

import pytest
import torch
from bf16_llm import bf16_llm
from peft import LoraConfig
from transformers import AutoModelForCausalLM

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.model import SupervisedFinetune

LORA = dict(type=LoraConfig, r=8, lora_alpha=16, target_modules=None, lora_dropout=0.0)


def _adapters(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _loss_and_grads(model, data):
    model.train()
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(data, mode="loss")["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.float() for n, p in _adapters(model).items()}


@pytest.mark.parametrize("quantized", [False, True], ids=["lora_bf16_base", "qlora"])
def test_16bit_adapters_give_the_float32_adapters_loss_and_grads(llama_dir, quantized):
    torch.manual_seed(0)
    fp32 = SupervisedFinetune(llm=bf16_llm(llama_dir, quantized), lora=LORA,
                              use_activation_checkpointing=False)
    torch.manual_seed(0)
    half = SupervisedFinetune(llm=bf16_llm(llama_dir, quantized), lora=LORA,
                              use_activation_checkpointing=False, adapters_16bit=True)
    adapters32, adapters16 = _adapters(fp32), _adapters(half)
    assert adapters32.keys() == adapters16.keys() and adapters32
    assert {p.dtype for p in adapters32.values()} == {torch.float32}  # peft's default
    assert {p.dtype for p in adapters16.values()} == {torch.bfloat16}
    # lora_B starts at 0 (no gradient to lora_A): give both models the same non-zero values.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in adapters32.items():
            param.copy_(torch.randn(param.shape, generator=g).to(torch.bfloat16) * 0.05)
            adapters16[name].copy_(param)
    vocab = fp32.llm.get_input_embeddings().weight.shape[0]
    samples = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in (12, 9)]
    data = default_collate_fn([{"input_ids": s, "labels": s} for s in samples])["data"]
    loss32, grads32 = _loss_and_grads(fp32, data)
    loss16, grads16 = _loss_and_grads(half, data)
    assert torch.equal(loss32, loss16)
    for name, grad in grads32.items():
        assert grad.abs().sum() > 0, name
        assert torch.equal(grad, grads16[name]), name


def test_a_float32_base_keeps_float32_adapters(llama_dir):
    model = SupervisedFinetune(
        llm=AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32), lora=LORA,
        use_activation_checkpointing=False, adapters_16bit=True)
    assert {p.dtype for p in _adapters(model).values()} == {torch.float32}


def test_16bit_adapters_without_lora_are_refused_in_one_line(llama_dir):
    from xtuner.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.adapters_16bit=True .* \(no lora / llm_lora\)"):
        SupervisedFinetune(llm=AutoModelForCausalLM.from_pretrained(llama_dir),
                           use_activation_checkpointing=False, adapters_16bit=True)
