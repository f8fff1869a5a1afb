"""``SupervisedFinetune(activations_16bit=...)``: QLoRA with the hidden states in the 16-bit
dtype the model was loaded in (``'auto'``, the default: for bfloat16, not for float16). The
oracle is peft without its k-bit preparation: LoRA put on the same bitsandbytes 4-bit model
loaded in bfloat16 (``get_peft_model`` alone), whose norms, embeddings and hidden states stay
bfloat16 as loaded."""
from __future__ import annotations

import pytest
import torch
from bf16_llm import bf16_llm
from peft import LoraConfig, get_peft_model

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.model import SupervisedFinetune
from xtuner.model.memory_budget import MemorySizes, available_levers
from xtuner.utils.errors import ConfigError

pytest.importorskip("bitsandbytes")


def _lora() -> LoraConfig:
    return LoraConfig(r=8, lora_alpha=16, target_modules=None, lora_dropout=0.0)


def _xtuner(path, **kwargs) -> SupervisedFinetune:
    torch.manual_seed(0)
    return SupervisedFinetune(llm=bf16_llm(path), lora=_lora(),
                              use_activation_checkpointing=False, **kwargs)


def _plain_peft(path):
    """LoRA on the 4-bit bfloat16 model without ``prepare_model_for_kbit_training``; the
    adapters' target modules are those xtuner found (every linear layer but the head)."""
    torch.manual_seed(0)
    reference = _xtuner(path, fused_lora=False, activations_16bit=False)
    targets = reference.llm.peft_config["default"].target_modules
    torch.manual_seed(0)
    lora = _lora()
    lora.target_modules = targets
    return get_peft_model(bf16_llm(path), lora)


def _adapters(module) -> dict[str, torch.nn.Parameter]:
    return {n.removeprefix("llm."): p for n, p in module.named_parameters() if p.requires_grad}


def _same_adapters(*modules) -> None:
    g = torch.Generator().manual_seed(1)
    first = _adapters(modules[0])
    with torch.no_grad():
        for name, param in first.items():
            value = torch.randn(param.shape, generator=g) * 0.05
            for module in modules:
                _adapters(module)[name].copy_(value)


def _data(vocab: int) -> dict:
    g = torch.Generator().manual_seed(2)
    samples = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in (12, 9)]
    return default_collate_fn([{"input_ids": s, "labels": s} for s in samples])["data"]


def _xtuner_loss_and_grads(model, data):
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(data, mode="loss")["loss"]
    loss.backward()
    return float(loss), {n: p.grad.float() for n, p in _adapters(model).items()}


def _peft_loss_and_grads(model, data):
    model.train()
    labels = data["labels"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=data["input_ids"]).logits.float()
    # mean over the trained tokens, next-token targets, as SupervisedFinetune's 'token' loss
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    loss.backward()
    return float(loss), {n: p.grad.float() for n, p in _adapters(model).items()}


def _decoder_inputs(model, data) -> set[torch.dtype]:
    """The dtypes of every decoder layer's hidden-state input and every norm's output."""
    seen, handles = set(), []
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, torch.nn.ModuleList):
            for layer in module:
                handles.append(layer.register_forward_pre_hook(
                    lambda m, args, kwargs: seen.add(
                        (kwargs.get("hidden_states", args[0] if args else None)).dtype),
                    with_kwargs=True))
        if name.endswith("norm"):
            handles.append(module.register_forward_hook(lambda m, a, out: seen.add(out.dtype)))
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(data, mode="loss")
    for handle in handles:
        handle.remove()
    return seen


def test_hidden_states_stay_bfloat16_and_peft_keeps_them_float32(llama_dir):
    kept = _xtuner(llama_dir)  # 'auto': bfloat16
    peft_stream = _xtuner(llama_dir, activations_16bit=False)
    assert kept.activations_16bit is True and peft_stream.activations_16bit is False
    data = _data(kept.llm.get_input_embeddings().weight.shape[0])
    assert _decoder_inputs(kept, data) == {torch.bfloat16}
    assert torch.float32 in _decoder_inputs(peft_stream, data)
    assert {p.dtype for n, p in kept.llm.named_parameters() if "norm" in n} == {torch.bfloat16}
    assert kept.float32_hidden_states is None


@pytest.mark.parametrize("fused", [False, True], ids=["peft_layers", "fused_layers"])
def test_loss_and_grads_are_those_of_peft_without_its_kbit_preparation(llama_dir, fused):
    model = _xtuner(llama_dir, fused_lora=fused)  # 'auto': bfloat16
    reference = _plain_peft(llama_dir)
    _same_adapters(reference, model)
    data = _data(model.llm.get_input_embeddings().weight.shape[0])
    loss_ref, grads_ref = _peft_loss_and_grads(reference, data)
    loss, grads = _xtuner_loss_and_grads(model, data)
    assert grads.keys() == grads_ref.keys() and grads
    # The same modules in the same dtypes; the two losses' reductions round the logits'
    # gradient differently, which bfloat16 backward passes carry to the adapters.
    assert loss == pytest.approx(loss_ref, rel=1e-6 if not fused else 2e-3)
    for name, grad in grads_ref.items():
        assert grad.norm() > 0, name
        assert (grads[name] - grad).norm() <= 0.02 * grad.norm(), name


def test_the_memory_plan_counts_16bit_states_and_has_no_such_lever_left(llama_dir):
    kept, peft_stream = _xtuner(llama_dir), _xtuner(llama_dir, activations_16bit=False)
    assert MemorySizes.of(kept).residual_bytes == 2
    assert MemorySizes.of(peft_stream).residual_bytes == 4
    assert "activations_16bit" not in available_levers(kept, "AdamW")
    # an explicit False is the user's: the plan does not turn it on
    assert "activations_16bit" not in available_levers(peft_stream, "AdamW")
    float16 = _xtuner_float16(llama_dir)  # 'auto' left it off: the plan may turn it on
    assert MemorySizes.of(float16).residual_bytes == 4
    assert "activations_16bit" in available_levers(float16, "AdamW")


def _xtuner_float16(path, **kwargs) -> SupervisedFinetune:
    return SupervisedFinetune(llm=bf16_llm(path, dtype=torch.float16), lora=_lora(),
                              use_activation_checkpointing=False, **kwargs)


def test_auto_keeps_float32_for_float16_and_says_how_to_turn_it_on(llama_dir, monkeypatch):
    """float16's range is too small for a residual stream summed over many layers where
    float32's is not: 'auto' keeps peft's stream there (XTuner v0's QLoRA configs), in one
    logged line naming the key; True turns it on."""
    logged = []
    monkeypatch.setattr("xtuner.model.sft.print_log", lambda msg, *a, **k: logged.append(msg))
    model = _xtuner_float16(llama_dir)
    assert model.activations_16bit is False and model.float32_hidden_states is not None
    assert any("model.activations_16bit=True" in line for line in logged)
    model = _xtuner_float16(llama_dir, activations_16bit=True)
    assert model.float32_hidden_states is None
    assert model.llm.get_input_embeddings()(torch.tensor([[5, 6]])).dtype == torch.float16


def test_a_setting_that_is_not_a_mode_is_refused(llama_dir):
    with pytest.raises(ConfigError, match="use 'auto', True or False"):
        _xtuner(llama_dir, activations_16bit="yes")


def test_a_model_that_is_not_quantized_is_refused_in_one_line(llama_dir):
    with pytest.raises(ConfigError, match="activations_16bit=True applies to QLoRA"):
        SupervisedFinetune(llm=bf16_llm(llama_dir, quantized=False), lora=_lora(),
                           use_activation_checkpointing=False, activations_16bit=True)
