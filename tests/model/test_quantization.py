"""4-bit (QLoRA) models stay trainable after an eval pass, on CPUs with and without AVX512-BF16.

bitsandbytes rewrites a ``Linear4bit`` weight into a CPU inference layout the first time the
layer runs in eval mode without grad, on CPUs with AVX512-BF16 (see
:mod:`xtuner.model.quantization`). Each test runs twice, with bitsandbytes' CPU feature
detection (``bitsandbytes.nn.modules.has_avx512bf16``, read by every ``Linear4bit.__init__``)
forced to True and to False, so both code paths are exercised on any CPU. Without
``keep_4bit_layers_trainable`` the forced-True runs fail on every CPU: the rewrite itself is
plain torch code, and it is what breaks.
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
import transformers
from bf16_llm import bf16_llm
from peft import LoraConfig
from transformers import AutoModelForCausalLM

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.demo import TINY_LLM_PATH
from xtuner.engine.hooks import EvaluateChatHook
from xtuner.model import SupervisedFinetune
from xtuner.model.quantization import keep_4bit_layers_trainable
from xtuner.utils import PROMPT_TEMPLATE

bnb = pytest.importorskip("bitsandbytes")

NF4 = dict(type=transformers.BitsAndBytesConfig, load_in_4bit=True, bnb_4bit_quant_type="nf4",
           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
LORA = dict(type=LoraConfig, r=8, lora_alpha=16, target_modules=None, lora_dropout=0.0)


@pytest.fixture(params=[True, False], ids=["avx512bf16", "no_avx512bf16"])
def cpu_has_avx512bf16(request, monkeypatch):
    """What bitsandbytes believes about the CPU, for the 4-bit layers built in the test."""
    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: request.param)
    assert bnb.nn.Linear4bit(64, 32).support_avx512bf16_for_cpu is request.param
    return request.param


def build_qlora(path, **kw):
    torch.manual_seed(0)
    return SupervisedFinetune(
        llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path,
                 quantization_config=NF4),
        lora=LORA, use_activation_checkpointing=False, **kw)


def batch(model, seed=0):
    vocab = model.llm.get_input_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(seed)
    samples = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in (12, 9)]
    return default_collate_fn([{"input_ids": s, "labels": s} for s in samples],
                              pad_index=2)["data"]


def eval_loss(model, data) -> float:
    model.eval()
    with torch.no_grad():
        return model(data, mode="loss")["loss"].item()


def adapter_grads(model, data) -> dict:
    model.train()
    model.zero_grad()
    model(data, mode="loss")["loss"].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def linear4bit_layers(model):
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def test_eval_pass_on_layers_narrower_than_a_block(llama_dir, cpu_has_avx512bf16):
    """The tiny test Llama (hidden 32) has layers narrower than NF4's 64-value block: on an
    AVX512-BF16 CPU the eval pass used to die in ``_convert_weight_packed_for_cpu``."""
    model = build_qlora(llama_dir)
    layers = linear4bit_layers(model)
    assert len(layers) == 14 and min(m.in_features for m in layers) < 64
    data = batch(model)
    before = eval_loss(model, data)
    grads = adapter_grads(model, data)
    assert grads and all(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    assert eval_loss(model, data) == pytest.approx(before, rel=1e-6)
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False)
                   for m in layers)


def test_training_after_an_eval_pass_gets_the_same_gradients(cpu_has_avx512bf16):
    """The demo model's layers can be rewritten (multiples of 32 and of the block): once they
    were, training ran through the inference kernel, which has no backward to its input, and
    the adapters below each quantized layer got no gradient (the QLoRA demo did not learn)."""
    model = build_qlora(TINY_LLM_PATH)
    data = batch(model)
    fresh = adapter_grads(model, data)
    model.zero_grad()
    eval_loss(model, data)
    after_eval = adapter_grads(model, data)
    assert after_eval.keys() == fresh.keys()
    for name, grad in fresh.items():
        torch.testing.assert_close(after_eval[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_chat_hook_before_and_during_training(llama_dir, cpu_has_avx512bf16):
    model = build_qlora(llama_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(llama_dir)
    hook = EvaluateChatHook(tokenizer, ["hello there"], every_n_iters=1,
                            prompt_template=PROMPT_TEMPLATE.qwen_chat, max_new_tokens=4,
                            generation_kwargs=dict(do_sample=False))
    logger = logging.getLogger("test_quantization")
    runner = SimpleNamespace(model=model, logger=logger, iter=0, hooks=[])
    data = batch(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    hook.before_train(runner)
    losses = []
    for step in range(4):
        model.train()
        loss = model(data, mode="loss")["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        runner.iter = step
        hook.after_train_iter(runner, step)  # generates every iteration
        assert model.training
    assert losses[-1] < losses[0] - 0.1, losses


def test_a_layer_already_rewritten_is_converted_back(cpu_has_avx512bf16):
    """A model that ran in eval mode before ``SupervisedFinetune`` got it: its rewritten
    layers are converted back (the block scales were rounded to bfloat16 on the way)."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu, dequantize_4bit

    torch.manual_seed(0)
    quant = transformers.BitsAndBytesConfig(**{k: v for k, v in NF4.items() if k != "type"})
    llm = AutoModelForCausalLM.from_pretrained(TINY_LLM_PATH, quantization_config=quant)
    layer = llm.model.layers[0].mlp.down_proj
    original = layer.weight.data.clone()
    dense = dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    # What Linear4bit.forward does in eval mode on an AVX512-BF16 CPU.
    layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu(
        layer.weight.data, layer.weight.quant_state)
    assert layer.weight.quant_state.packing_format_for_cpu
    assert keep_4bit_layers_trainable(llm) == 28
    state = layer.weight.quant_state
    assert not state.packing_format_for_cpu and state.nested
    assert torch.equal(layer.weight.data, original)
    restored = dequantize_4bit(layer.weight.data, state)
    torch.testing.assert_close(restored, dense, rtol=1e-2, atol=1e-3)
    assert not any(m.support_avx512bf16_for_cpu for m in linear4bit_layers(llm))
    # Back on the training path: y = x W^T with a gradient to x, in eval mode too.
    for mode in (True, False):
        layer.train(mode)
        x = torch.randn(3, layer.in_features, requires_grad=True)
        y = layer(x)
        torch.testing.assert_close(y, x @ restored.T, rtol=1e-4, atol=1e-4)
        y.sum().backward()
        torch.testing.assert_close(x.grad, restored.sum(0).expand(3, -1), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        layer(torch.randn(3, layer.in_features))
    assert not layer.weight.quant_state.packing_format_for_cpu


def _qlora_16bit(path, keep_16bit: bool, monkeypatch):
    """A QLoRA model loaded in bfloat16; ``keep_16bit=False`` leaves peft's float32 cast."""
    if not keep_16bit:
        from peft import prepare_model_for_kbit_training

        def peft_only(model, checkpointing):
            return prepare_model_for_kbit_training(model, checkpointing), 0, None

        monkeypatch.setattr("xtuner.model.sft.prepare_kbit_model", peft_only)
    torch.manual_seed(0)
    return SupervisedFinetune(llm=bf16_llm(path), lora=LORA, use_activation_checkpointing=False,
                              activations_16bit=False)  # peft's float32 hidden states


def test_frozen_embeddings_and_head_stay_16bit_with_the_same_loss_and_grads(
        llama_dir, monkeypatch):
    """peft's ``prepare_model_for_kbit_training`` casts the frozen embeddings and head to
    float32 (twice the memory); they are kept in the loaded bfloat16, and under autocast the
    loss and adapter gradients are those of peft's float32 copies, bit for bit."""
    kept = _qlora_16bit(llama_dir, True, monkeypatch)
    with monkeypatch.context() as m:
        peft_cast = _qlora_16bit(llama_dir, False, m)
    assert kept.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert kept.llm.get_output_embeddings().weight.dtype == torch.bfloat16
    assert peft_cast.llm.get_input_embeddings().weight.dtype == torch.float32
    norms = [p.dtype for n, p in kept.named_parameters() if "norm" in n]
    assert norms and set(norms) == {torch.float32}  # peft's cast of the norms is kept
    data = batch(kept)
    results = []
    for model in (kept, peft_cast):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            grads = adapter_grads(model, data)
            model.zero_grad()
            loss = model(data, mode="loss")["loss"]
        results.append((loss.detach(), grads))
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1].keys() == results[1][1].keys()
    for name, grad in results[0][1].items():
        assert torch.equal(grad, results[1][1][name]), name


def test_16bit_head_without_autocast_still_trains(llama_dir, monkeypatch):
    """Without autocast the float32 hidden states are cast to the head's dtype (no dtype
    error), and every adapter gets a gradient (lora_B; lora_A's is 0 while B starts at 0)."""
    model = _qlora_16bit(llama_dir, True, monkeypatch)
    grads = adapter_grads(model, batch(model))
    lora_b = [g for n, g in grads.items() if "lora_B" in n]
    assert lora_b and all(g.abs().sum() > 0 for g in lora_b)
