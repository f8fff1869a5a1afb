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
    kwargs.setdefault("activations_16bit", False)  # peft's float32 hidden states
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
                                  "adapters_16bit_dropout", "dropout", "checkpointed",
                                  "checkpointed_non_reentrant"])
def test_fused_layers_give_peft_loss_and_gradients(llama_dir, monkeypatch, case):
    checkpointed = case.startswith("checkpointed")
    kwargs = dict(dropout=0.1 if "dropout" in case or checkpointed else 0.0,
                  adapters_16bit=case.startswith("adapters_16bit"), checkpointing=checkpointed,
                  reentrant_checkpointing=case != "checkpointed_non_reentrant")
    peft_model = _model(llama_dir, fused=False, **kwargs)
    fused = _model(llama_dir, fused=True, **kwargs)
    _same_adapters(peft_model, fused)
    data = _batch(fused)
    autocast = not case.startswith("adapters_16bit")  # 16-bit adapters compute without it
    reference = _loss_and_grads(peft_model, data, autocast)
    calls = _count_fused_calls(monkeypatch)
    _assert_close(reference, _loss_and_grads(fused, data, autocast))
    layers = len([m for m in fused.modules() if hasattr(m, "lora_A")])
    # every adapted layer went through the function (twice each when recomputed)
    assert len(calls) == layers * (2 if checkpointed else 1)


def _one_layer(model):
    return model.llm.base_model.model.model.layers[0].self_attn.q_proj


@pytest.mark.parametrize("case", ["autocast_fp32_x", "adapters_16bit_fp32_x", "autocast_bf16_x",
                                  "dropout", "dropout_module_in_eval", "tiny_update"])
def test_one_fused_layer_gives_peft_outputs_and_gradients(tiny_dirs, case):
    """One adapted layer (Qwen2's q_proj: a 4-bit base with a bias): the adapter's part of
    the output and of x's gradient, and the adapter's gradients. With float32 inputs (peft's
    prepared QLoRA stream) both sums are taken in float32, so an update far below a bf16 step
    of the base output still counts."""
    kwargs = dict(dropout=0.1 if case.startswith("dropout") else 0.0,
                  adapters_16bit=case == "adapters_16bit_fp32_x")
    layers = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model = SupervisedFinetune(
            llm=bf16_llm(tiny_dirs["qwen2"]), fused_lora=fused, use_activation_checkpointing=False,
            lora=dict(type=LoraConfig, r=8, lora_alpha=24, target_modules=["q_proj"],
                      lora_dropout=kwargs["dropout"]),
            adapters_16bit=kwargs["adapters_16bit"])
        layers[fused] = _one_layer(model.train())
        if case == "dropout_module_in_eval":  # peft's dropout module then passes x through
            layers[fused].lora_dropout["default"].eval()
    assert layers[False].base_layer.bias is not None
    assert type(layers[True]) is FusedLoraLinear4bit
    _same_adapters(layers[False], layers[True])
    if case == "tiny_update":  # an update of ~1e-4 of the base output, below a bf16 step
        with torch.no_grad():
            for layer in layers.values():
                layer.lora_B["default"].weight.mul_(1e-3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, layers[True].in_features, generator=g)
    if case == "autocast_bf16_x":
        x = x.to(torch.bfloat16)
    grad_out = torch.randn(2, 5, layers[True].out_features, generator=g)
    results = {}
    for fused, layer in layers.items():
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(5)  # the same dropout draws
        with torch.autocast("cpu", dtype=torch.bfloat16,
                            enabled=not kwargs["adapters_16bit"]):
            out = layer(xi)
        out.backward(grad_out.to(out.dtype))
        # the base's own output and input gradient, to compare the adapter's parts
        xb = x.clone().requires_grad_(True)
        base = layer.base_layer(xb.to(torch.bfloat16))
        base.backward(grad_out.to(base.dtype))
        base = base.detach().float()
        results[fused] = (out.detach().float(), (xi.grad - xb.grad).float(),
                          layer.lora_A["default"].weight.grad.float(),
                          layer.lora_B["default"].weight.grad.float())
    assert results[True][0].dtype == results[False][0].dtype
    (out_p, *grads_p), (out_f, *grads_f) = results[False], results[True]
    if case == "autocast_bf16_x":  # the sum itself is bf16 in both: equal to bf16 rounding
        assert (out_f - out_p).norm() <= 1e-2 * out_p.norm()
    else:  # the adapter's part of the output, against peft's
        delta_p, delta_f = out_p - base, out_f - base
        assert delta_p.norm() > 0
        assert (delta_f - delta_p).norm() <= 1e-2 * delta_p.norm(), case
    # x's gradient less the base's: the adapter's part, summed in float32 as peft sums it
    for name, grad_p, grad_f in zip(("x (adapter's part)", "lora_A", "lora_B"), grads_p, grads_f):
        assert grad_p.norm() > 0, name
        assert (grad_f - grad_p).norm() <= 1e-2 * grad_p.norm(), name


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
    lora = LoraConfig(r=8, lora_alpha=16)
    SupervisedFinetune(llm=bf16_llm(llama_dir), lora=lora, use_activation_checkpointing=False)
    assert lora._custom_modules is None and lora.target_modules is None


@pytest.mark.parametrize("lora_kwargs", [dict(use_dora=True), dict(lora_bias=True)])
def test_lora_kinds_the_function_does_not_cover_keep_peft_layers_and_say_so(
        llama_dir, lora_kwargs, monkeypatch):
    from xtuner.model import sft

    logged = []
    monkeypatch.setattr(sft, "print_log", lambda msg, *a, **k: logged.append(str(msg)))
    model = SupervisedFinetune(llm=bf16_llm(llama_dir), use_activation_checkpointing=False,
                               lora=LoraConfig(r=8, lora_alpha=16, **lora_kwargs))
    assert not any(isinstance(m, FusedLoraLinear4bit) for m in model.modules())
    assert f"model.fused_lora: {next(iter(lora_kwargs))}; peft's LoRA layers run" in logged


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


@pytest.mark.parametrize("adapters_16bit", [False, True], ids=["autocast", "adapters_16bit"])
def test_dropout_is_drawn_on_the_dtype_peft_draws_it_on(llama_dir, monkeypatch, adapters_16bit):
    """The mask depends on the dtype it is drawn on (CUDA's dropout kernel vectorises by it):
    under autocast peft drops the input in its own dtype, without autocast after casting it
    to the adapter's dtype."""
    drawn = {}
    for fused in (False, True):
        model = _model(llama_dir, fused=fused, dropout=0.1, adapters_16bit=adapters_16bit).train()
        layer = _one_layer(model)
        seen = drawn[fused] = []
        if fused:
            def recording(t, *args, seen=seen, native=torch.native_dropout):
                seen.append(t.dtype)
                return native(t, *args)

            monkeypatch.setattr(torch, "native_dropout", recording)
        else:
            layer.lora_dropout["default"].register_forward_pre_hook(
                lambda m, args, seen=seen: seen.append(args[0].dtype))
        x = torch.randn(3, layer.in_features)  # float32, as peft's prepared QLoRA stream
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not adapters_16bit):
            layer(x)
        monkeypatch.undo()
    assert drawn[True] == drawn[False] == [torch.bfloat16 if adapters_16bit else torch.float32]
