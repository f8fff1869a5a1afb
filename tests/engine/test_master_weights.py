"""``AmpOptimWrapper(master_weights=True)``: 16-bit trained parameters get float32 masters that
the optimizer updates in their place; the updates equal torch's optimizer on float32 weights
given the same gradients, a step the loss scaler skips changes nothing, and a resumed run
continues from the masters exactly. (mmengine's wrapper asserts a GPU; these run its CPU
path with that check lifted.)"""
from __future__ import annotations

import copy

import pytest
import torch

from xtuner.engine.optim import AmpOptimWrapper


@pytest.fixture(autouse=True)
def amp_on_cpu(monkeypatch):
    monkeypatch.setattr("mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available",
                        lambda: True)


def _model(dtype=torch.bfloat16):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Linear(4, 3))
    model[1].requires_grad_(False)  # frozen: never gets a master
    return model.to(dtype)


def _wrapper(model, dtype="bfloat16", lr=1e-3, **kwargs):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    return AmpOptimWrapper(optimizer=optimizer, dtype=dtype, master_weights=True, **kwargs)


def _grads(step: int, params):
    g = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=g) * 1e-2 for p in params]


def _step(wrapper, model, step: int, scale: float = 1.0):
    """A backward pass through the wrapper (its loss scaler included) whose gradients on the
    16-bit parameters are ``scale`` times :func:`_grads`, then the update."""
    trained = [p for p in model.parameters() if p.requires_grad]
    loss = sum((p.float() * g * scale).sum() for p, g in zip(trained, _grads(step, trained)))
    wrapper.update_params(loss)


def test_updates_are_float32_adamw_on_the_16bit_gradients():
    model = _model()
    reference = [p.detach().float().clone().requires_grad_(True)
                 for p in model.parameters() if p.requires_grad]
    ref_opt = torch.optim.AdamW(reference, lr=1e-3, weight_decay=0.01)
    wrapper = _wrapper(model)
    assert len(wrapper.masters) == 2 and model[1].weight.dtype == torch.bfloat16
    for step in range(5):
        _step(wrapper, model, step)
        for p, g in zip(reference, _grads(step, reference)):
            p.grad = g.to(torch.bfloat16).float()
        ref_opt.step()
    for master, ref, param in zip(wrapper.masters.masters, reference, wrapper.masters.params):
        assert master.dtype == torch.float32
        assert torch.equal(master, ref)
        assert torch.equal(param, ref.to(torch.bfloat16))  # the model computes with them
        assert param.grad is None
    # Updates smaller than bfloat16's resolution add up in the masters; updating the 16-bit
    # weights directly loses them.
    direct = _model()
    plain = AmpOptimWrapper(optimizer=torch.optim.AdamW(direct.parameters(), lr=1e-3,
                                                        weight_decay=0.01), dtype="bfloat16")
    for step in range(5):
        _step(plain, direct, step)
    assert not torch.equal(direct[0].weight, wrapper.masters.params[0])


def test_clipping_applies_to_the_float32_gradients():
    model = _model()
    reference = [p.detach().float().clone().requires_grad_(True)
                 for p in model.parameters() if p.requires_grad]
    ref_opt = torch.optim.AdamW(reference, lr=1e-3, weight_decay=0.01)
    wrapper = _wrapper(model, clip_grad=dict(max_norm=0.01))
    _step(wrapper, model, 0, scale=10.0)
    for p, g in zip(reference, _grads(0, reference)):
        p.grad = (g * 10).to(torch.bfloat16).float()
    norm = torch.nn.utils.clip_grad_norm_(reference, 0.01)
    ref_opt.step()
    assert norm > 0.01
    for master, ref in zip(wrapper.masters.masters, reference):
        assert torch.equal(master, ref)


def test_fp16_loss_scaling_unscales_and_skips_overflowing_steps():
    model = _model(torch.float16)
    wrapper = _wrapper(model, dtype="float16")
    wrapper.loss_scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    reference = [p.detach().float().clone().requires_grad_(True)
                 for p in model.parameters() if p.requires_grad]
    ref_opt = torch.optim.AdamW(reference, lr=1e-3, weight_decay=0.01)
    _step(wrapper, model, 0)  # the scaler multiplies the loss by 1024
    for p, g in zip(reference, _grads(0, reference)):
        p.grad = (g * 1024).to(torch.float16).float() / 1024
    ref_opt.step()
    for master, ref in zip(wrapper.masters.masters, reference):
        torch.testing.assert_close(master, ref, rtol=0, atol=1e-7)
    before = [m.clone() for m in wrapper.masters.masters]
    weights = [p.clone() for p in wrapper.masters.params]
    _step(wrapper, model, 1, scale=float("inf"))
    assert wrapper.loss_scaler.get_scale() == 512.0
    assert all(torch.equal(a, b) for a, b in zip(before, wrapper.masters.masters))
    assert all(torch.equal(a, b) for a, b in zip(weights, wrapper.masters.params))


def test_resume_continues_from_the_masters_exactly():
    model = _model()
    wrapper = _wrapper(model)
    for step in range(6):
        _step(wrapper, model, step)
    straight = [m.clone() for m in wrapper.masters.masters]

    model = _model()
    wrapper = _wrapper(model)
    for step in range(3):
        _step(wrapper, model, step)
    saved_model = copy.deepcopy(model.state_dict())
    saved = copy.deepcopy(wrapper.state_dict())
    assert set(saved["master_weights"]) == {0, 1}  # by place among the optimizer's params

    # mmengine's Runner: the wrapper is built, then the model's weights and the wrapper's
    # state are loaded
    resumed = _model()
    wrapper = _wrapper(resumed)
    resumed.load_state_dict(saved_model)
    wrapper.load_state_dict(saved)
    for step in range(3, 6):
        _step(wrapper, resumed, step)
    for master, ref in zip(wrapper.masters.masters, straight):
        assert torch.equal(master, ref)

    # Without the saved masters the run would continue from the rounded 16-bit weights.
    rounded = _model()
    wrapper = _wrapper(rounded)
    rounded.load_state_dict(saved_model)
    wrapper.load_state_dict({k: v for k, v in saved.items() if k != "master_weights"})
    for step in range(3, 6):
        _step(wrapper, rounded, step)
    assert not all(torch.equal(m, r) for m, r in zip(wrapper.masters.masters, straight))


def test_weights_loaded_after_the_wrapper_is_built_are_kept():
    """mmengine builds the optimizer wrapper, then loads ``load_from``'s weights into the model
    (no optimizer state): the first step starts the masters from those weights."""
    model = _model()
    wrapper = _wrapper(model, lr=0.0)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    _step(wrapper, model, 0)
    assert all(torch.equal(m, torch.full_like(m, 0.5)) for m in wrapper.masters.masters)
    assert torch.equal(model[0].weight, torch.full_like(model[0].weight, 0.5))


def test_a_run_without_masters_resumes_the_saved_masters_into_its_float32_weights():
    model = _model()
    wrapper = _wrapper(model)
    for step in range(2):
        _step(wrapper, model, step)
    saved = copy.deepcopy(wrapper.state_dict())
    fp32 = _model(torch.float32)
    plain = AmpOptimWrapper(optimizer=torch.optim.AdamW(fp32.parameters(), lr=1e-3),
                            dtype="bfloat16")
    plain.load_state_dict(saved)
    assert torch.equal(fp32[0].weight, wrapper.masters.masters[0])
    assert torch.equal(fp32[0].bias, wrapper.masters.masters[1])


def test_masters_keep_their_places_across_parameter_groups():
    """Only 16-bit parameters that train get masters; a saved master goes back to the same
    place among the optimizer's parameters, whatever the groups around it hold."""
    weight = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    bias = torch.nn.Parameter(torch.ones(3))  # float32: updated as it is
    frozen = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16), requires_grad=False)
    other = torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))
    groups = [{"params": [weight, bias]}, {"params": [frozen, other], "lr": 0.1}]
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(groups, lr=0.01), dtype="bfloat16",
                              master_weights=True)
    assert wrapper.masters.params == [weight, other] and wrapper.masters.slots == [0, 3]
    kept = wrapper.optimizer.param_groups
    assert kept[0]["params"][1] is bias and kept[1]["params"][0] is frozen
    loss = (weight.float().sum() + bias.sum() + other.float().sum()) * 1.0
    wrapper.update_params(loss)
    saved = copy.deepcopy(wrapper.state_dict())
    assert torch.equal(saved["master_weights"][3], torch.full((2,), 0.9))  # lr 0.1 group
    fresh = [torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16)),
             torch.nn.Parameter(torch.zeros(3)),
             torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16), requires_grad=False),
             torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))]
    again = AmpOptimWrapper(optimizer=torch.optim.SGD(
        [{"params": fresh[:2]}, {"params": fresh[2:], "lr": 0.1}], lr=0.01),
        dtype="bfloat16", master_weights=True)
    again.load_state_dict(saved)
    assert torch.equal(again.masters.masters[0], torch.full((3,), 0.99))
    assert torch.equal(fresh[3], torch.full((2,), 0.9, dtype=torch.bfloat16))
    assert torch.equal(fresh[2], torch.zeros(3, dtype=torch.bfloat16))  # frozen: untouched
