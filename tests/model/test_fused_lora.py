"""``SupervisedFinetune(fused_lora=True)`` (the default): QLoRA's adapted layers run as one
autograd function. peft's own ``Linear4bit`` LoRA layer (``fused_lora=False``) is the oracle:
the same adapters give the same loss and gradients up to bfloat16 rounding, the adapters are
saved and merged as peft's, and the cases the function does not cover take peft's forward."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from bf16_llm import bf16_llm
from peft import LoraConfig

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.model import SupervisedFinetune

pytest.importorskip("bitsandbytes")
from xtuner.model import fused_lora as fused_lora_module  # noqa: E402 (needs bitsandbytes)
from xtuner.model.fused_lora import FusedLoraLinear4bit  # noqa: E402


def _model(llama_dir, fused: bool, dropout: float = 0.0, **kwargs) -> SupervisedFinetune:
    torch.manual_seed(0)
    lora = dict(type=LoraConfig, r=8, lora_alpha=24, target_modules=None, lora_dropout=dropout)
    return SupervisedFinetune(llm=bf16_llm(llama_dir), lora=lora, fused_lora=fused,
                              use_activation_checkpointing=kwargs.pop("checkpointing", False),
                              **kwargs)


def _adapters(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _same_adapters(reference, other) -> None:
    """Both models' adapters set to the same non-zero values (peft starts lora_B at 0)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in _adapters(reference).items():
            param.copy_(torch.randn(param.shape, generator=g) * 0.05)
            _adapters(other)[name].copy_(param)


def _batch(model):
    g = torch.Generator().manual_seed(2)
    vocab = model.llm.get_input_embeddings().weight.shape[0]
    samples = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in (12, 9)]
    return default_collate_fn([{"input_ids": s, "labels": s} for s in samples])["data"]


def _loss_and_grads(model, data, autocast: bool, seed: int = 3):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout draws
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(data, mode="loss")["loss"]
    loss.backward()
    return float(loss), {n: p.grad.float() for n, p in _adapters(model).items()}


def _assert_close(reference, other) -> None:
    """Loss and every adapter gradient agree to bfloat16 rounding (the two paths round sums
    at different places), and no gradient is zero."""
    (loss_ref, grads_ref), (loss, grads) = reference, other
    assert loss == pytest.approx(loss_ref, rel=2e-3)
    assert grads.keys() == grads_ref.keys() and grads
    for name, grad in grads_ref.items():
        assert grad.norm() > 0, name
        assert (grads[name] - grad).norm() <= 0.02 * grad.norm(), name


def _count_fused_calls(monkeypatch) -> list:
    calls = []
    apply = fused_lora_module._QLoraFunction.apply

    def counting(*args):
        calls.append(1)
        return apply(*args)

    monkeypatch.setattr(fused_lora_module._QLoraFunction, "apply", counting)
    return calls


@pytest.mark.parametrize("case", ["autocast_fp32_adapters", "adapters_16bit",
                                  "dropout", "checkpointed"])
def test_fused_layers_give_peft_loss_and_gradients(llama_dir, monkeypatch, case):
    kwargs = dict(dropout=0.1 if case == "dropout" else 0.0,
                  adapters_16bit=case == "adapters_16bit", checkpointing=case == "checkpointed")
    peft_model = _model(llama_dir, fused=False, **kwargs)
    fused = _model(llama_dir, fused=True, **kwargs)
    _same_adapters(peft_model, fused)
    data = _batch(fused)
    autocast = case != "adapters_16bit"  # 16-bit adapters compute in bf16 without autocast
    reference = _loss_and_grads(peft_model, data, autocast)
    calls = _count_fused_calls(monkeypatch)
    _assert_close(reference, _loss_and_grads(fused, data, autocast))
    layers = len([m for m in fused.modules() if hasattr(m, "lora_A")])
    # every adapted layer went through the function (twice each when checkpointed)
    assert len(calls) == layers * (2 if case == "checkpointed" else 1)


def test_fused_layers_are_peft_layers_with_peft_state_and_config(llama_dir, tmp_path):
    from peft.tuners.lora.bnb import Linear4bit

    peft_model, fused = _model(llama_dir, fused=False), _model(llama_dir, fused=True)
    fused_layers = [m for m in fused.modules() if hasattr(m, "lora_A")]
    assert fused_layers and all(type(m) is FusedLoraLinear4bit and isinstance(m, Linear4bit)
                                for m in fused_layers)
    assert pickle.loads(pickle.dumps(fused_layers[0])) is not None  # a module-level class
    assert all(type(m) is Linear4bit for m in peft_model.modules() if hasattr(m, "lora_A"))
    assert fused.state_dict().keys() == peft_model.state_dict().keys()
    fused.llm.save_pretrained(tmp_path / "fused")
    peft_model.llm.save_pretrained(tmp_path / "peft")
    config = json.loads((tmp_path / "fused" / "adapter_config.json").read_text())
    assert config == json.loads((tmp_path / "peft" / "adapter_config.json").read_text())


def test_the_callers_lora_config_is_left_as_given(llama_dir):
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"])
    SupervisedFinetune(llm=bf16_llm(llama_dir), lora=lora, use_activation_checkpointing=False)
    assert lora._custom_modules is None


def test_eval_disabled_adapters_and_other_dtypes_take_peft_forward(llama_dir, monkeypatch):
    fused = _model(llama_dir, fused=True)
    data = _batch(fused)
    calls = _count_fused_calls(monkeypatch)
    fused.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fused(data, mode="loss")
    fused.train()
    with torch.no_grad(), fused.llm.disable_adapter(), torch.autocast("cpu", dtype=torch.bfloat16):
        fused(data, mode="loss")
    # float32 adapters without autocast compute in float32 (peft), not the base's bf16
    with torch.no_grad():
        fused(data, mode="loss")
    assert calls == []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fused(data, mode="loss")
    assert calls


def test_fused_layers_merge_as_peft_layers(llama_dir):
    fused = _model(llama_dir, fused=True)
    peft_model = _model(llama_dir, fused=False)
    _same_adapters(peft_model, fused)
    data = _batch(fused)
    with torch.no_grad():
        expected = peft_model.llm.merge_and_unload()(input_ids=data["input_ids"]).logits
        got = fused.llm.merge_and_unload()(input_ids=data["input_ids"]).logits
    assert not any(hasattr(m, "lora_A") for m in fused.modules())
    assert torch.equal(got, expected)


def test_fused_lora_false_keeps_peft_layers(llama_dir):
    model = _model(llama_dir, fused=False)
    assert not any(isinstance(m, FusedLoraLinear4bit) for m in model.modules())
