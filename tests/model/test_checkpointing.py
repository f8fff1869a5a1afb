"""Activation checkpointing per layer and the 'auto' fit (xtuner.model.checkpointing)."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from xtuner.model.checkpointing import (
    ActivationCheckpointingPlan,
    SavedBytesMeter,
    checkpointable_layers,
    parse_memory,
    plan_plain_layers,
    set_plain_layers,
)
from xtuner.model.sft import SupervisedFinetune
from xtuner.utils.errors import ConfigError

GiB = 2**30


@pytest.mark.parametrize("text,expected", [
    (34, 34 * GiB), (0.5, GiB // 2), ("34GB", 34 * GiB), ("34 GiB", 34 * GiB),
    ("800MB", 800 * 2**20), ("12", 12 * GiB), (None, None),
])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "34XB", -1, "GB"])
def test_parse_memory_rejects(bad):
    with pytest.raises(ValueError):
        parse_memory(bad)


def test_plan_fills_room_and_backs_off():
    # Without the forward-end reading: 10 GiB of room at 1 GiB a layer, 1 plain becomes 11.
    assert plan_plain_layers(24 * GiB, 34 * GiB, GiB, plain=1, total=28) == 11
    assert plan_plain_layers(10 * GiB, 80 * GiB, GiB, plain=1, total=28) == 28
    # The peak is the step's end (weights, grads, optimizer states); the forward ended at
    # 19 GiB: 34 - 19 - 1.0625 (margin: 1/32 of the budget) leaves 13 more plain layers.
    assert plan_plain_layers(23 * GiB, 34 * GiB, GiB, plain=1, total=28,
                             forward_end=19 * GiB) == 14
    # a small budget keeps a margin of at least 512 MiB
    assert plan_plain_layers(3 * GiB, 4 * GiB, GiB // 4, plain=0, total=28,
                             forward_end=2 * GiB) == 6
    # 2.5 GiB over at 1 GiB a layer: three plain layers go back to checkpointing.
    assert plan_plain_layers(int(36.5 * GiB), 34 * GiB, GiB, plain=10, total=28) == 7
    assert plan_plain_layers(40 * GiB, 34 * GiB, GiB, plain=2, total=28) == 0
    assert plan_plain_layers(30 * GiB, 34 * GiB, 0, plain=3, total=28) == 3
    # never fewer plain layers than now while under the budget
    assert plan_plain_layers(33 * GiB, 34 * GiB, GiB, plain=3, total=28,
                             forward_end=34 * GiB) == 3


def _llm(llama_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)


def _grads(llm, ids):
    llm.zero_grad(set_to_none=True)
    llm(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in llm.named_parameters() if p.grad is not None}


def test_partial_checkpointing_gives_the_same_gradients(llama_dir):
    ids = torch.randint(5, 100, (1, 24), generator=torch.Generator().manual_seed(1))
    plain = _llm(llama_dir).train()
    expected = _grads(plain, ids)
    llm = _llm(llama_dir).train()
    llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = checkpointable_layers(llm)
    assert len(layers) == llm.config.num_hidden_layers
    set_plain_layers(layers, 1)
    assert [layer.gradient_checkpointing for layer in layers] == [True] * (len(layers) - 1) + [
        False]
    got = _grads(llm, ids)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_saved_bytes_meter_counts_activations_not_weights():
    linear = torch.nn.Linear(64, 64)
    x = torch.randn(8, 64, requires_grad=True)
    with SavedBytesMeter(linear) as meter:
        torch.relu(linear(x))
    # the input (saved for the weight gradient) and relu's output, 8*64 floats each;
    # the weight itself is not counted.
    assert meter.bytes == 2 * 8 * 64 * 4


def test_plan_measures_the_plain_layer_and_fits_the_budget(llama_dir):
    llm = _llm(llama_dir).train()
    llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    plan = ActivationCheckpointingPlan(llm, budget=10 * GiB)
    total = len(plan.layers)
    assert plan.plain == 1 and plan.checkpointed == total - 1
    ids = torch.randint(5, 100, (1, 32))
    llm(input_ids=ids, labels=ids).loss.backward()
    # a 32-token row through a 32-wide layer keeps a few KiB
    assert 1024 < plan.layer_bytes < 2**20
    assert plan.update(peak=10 * GiB - plan.layer_bytes // 2) == 1  # no room for another


def test_the_first_fit_goes_half_way_and_the_second_fits_the_measured_peak(llama_dir):
    """A plain layer costs the step's peak more than the tensors it saves; the first fit
    takes half of the room it finds, the second fits the peak at the measured rate, keeping
    the margin (1/32 of the budget, at least 512 MiB) free."""
    MiB = 2**20
    llm = _llm(llama_dir).train()
    llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    plan = ActivationCheckpointingPlan(llm, budget=10 * GiB)
    plan.layers = plan.layers * (32 // len(plan.layers))  # pretend 32 layers
    plan.layer_bytes = 256 * MiB
    # 6 GiB of room: 24 more plain layers by the saved tensors; the first fit takes 12
    assert plan.update(peak=4 * GiB) == 13 and plan.calibrating
    # they added 320 MiB each to the peak: 10 GiB - 512 MiB - 7936 MiB leaves room for 5
    assert plan.update(peak=4 * GiB + 12 * 320 * MiB) == 18
    assert not plan.calibrating and plan.slope == 320 * MiB
    # a step over the budget: back at the (re)measured rate, 640 MiB a layer here
    assert plan.update(peak=4 * GiB + 12 * 320 * MiB + 5 * 640 * MiB) == 18 - 3
    assert plan.slope == 640 * MiB


def test_the_fit_counts_what_the_first_step_leaves_allocated(llama_dir):
    """AdamW creates its states in the first optimizer step, after that step's peak: every
    later step holds them, so the fit expects them; the measured rate compares peaks above
    each step's start, so they are not taken for activations; batches of other sizes are
    not compared."""
    MiB = 2**20
    llm = _llm(llama_dir).train()
    llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def plan_after_step0(held):
        plan = ActivationCheckpointingPlan(llm, budget=20480 * MiB)  # margin 640 MiB
        plan.layers = plan.layers * (32 // len(plan.layers))
        plan.layer_bytes = 256 * MiB
        plan._tokens, plan._forward_start, plan.forward_end = 2048, 10240 * MiB, 11264 * MiB
        plan.update(peak=12288 * MiB, held=held)
        return plan

    # room 20480 - 640 - (11264 + 1280) = 7296 MiB: 28 more, of which the first fit takes 14
    plan = plan_after_step0(held=11520 * MiB)
    assert plan.plain == 15
    assert plan_after_step0(held=None).plain == 16  # 8576 MiB of room without the states
    # step 1 starts with the states; its peak rose 300 MiB a plain layer above that start
    plan._forward_start = 11520 * MiB
    plan.update(peak=(11520 + 2048 + 14 * 300) * MiB, held=11520 * MiB)
    assert plan.slope == 300 * MiB and not plan.calibrating
    assert plan.plain == 15 + (20480 - 640 - (11520 + 2048 + 14 * 300)) // 300  # 21
    # a batch of another size is not compared with the last one
    other = plan_after_step0(held=11520 * MiB)
    other._tokens = 1024
    other.update(peak=16 * 1024 * MiB, held=11520 * MiB)
    assert other.calibrating and other.slope == 0


def test_sft_auto_is_off_on_cpu_and_values_are_checked(llama_dir):
    from transformers import AutoModelForCausalLM as Auto

    llm = dict(type=Auto.from_pretrained, pretrained_model_name_or_path=llama_dir)
    model = SupervisedFinetune(llm=llm)  # default 'auto'
    assert model.use_activation_checkpointing is False
    assert model.checkpointing_plan is None and not model.is_checkpointing_activations
    with pytest.raises(ConfigError, match="use_activation_checkpointing"):
        SupervisedFinetune(llm=llm, use_activation_checkpointing="sometimes")


def test_sft_auto_plan_on_gpu_machines(llama_dir, monkeypatch):
    """With CUDA present 'auto' checkpoints all layers but the last; a re-enable (after the
    chat hook generated) restores the fit, not all layers."""
    from transformers import AutoModelForCausalLM as Auto

    import xtuner.model.sft as sft

    monkeypatch.setattr(sft.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sft, "apply_liger_kernels", lambda llm, mode, layer_kernels=True: False)
    monkeypatch.setattr(sft, "apply_device_fallbacks", lambda cfg: cfg)
    llm = dict(type=Auto.from_pretrained, pretrained_model_name_or_path=llama_dir)
    model = SupervisedFinetune(llm=llm, activation_memory_budget="1GB")
    plan = model.checkpointing_plan
    assert plan.budget == GiB and plan.plain == 1
    plan.plain = 2
    model.gradient_checkpointing_disable()
    model.gradient_checkpointing_enable()
    assert [layer.gradient_checkpointing for layer in plan.layers].count(False) == 2
    with pytest.raises(ConfigError, match="activation_memory_budget"):
        SupervisedFinetune(llm=llm, activation_memory_budget="a lot")


def test_saved_bytes_meter_ignores_parameters_in_a_flat_buffer():
    """DeepSpeed keeps parameters as views of one flat buffer: still not activations."""
    flat = torch.zeros(64 * 64 + 64)
    linear = torch.nn.Linear(64, 64)
    linear.weight = torch.nn.Parameter(flat[:64 * 64].view(64, 64))
    linear.bias = torch.nn.Parameter(flat[64 * 64:])
    x = torch.randn(8, 64, requires_grad=True)
    with SavedBytesMeter(linear) as meter:
        linear(x)
    assert meter.bytes == 8 * 64 * 4


def test_sft_torch_compile_compiles_each_layer_and_keeps_the_loss(llama_dir):
    from transformers import AutoModelForCausalLM as Auto

    llm = dict(type=Auto.from_pretrained, pretrained_model_name_or_path=llama_dir)
    ids = torch.randint(5, 100, (1, 24), generator=torch.Generator().manual_seed(2))
    data = {"input_ids": ids, "labels": ids}
    plain = SupervisedFinetune(llm=llm, use_activation_checkpointing=False)
    compiled = SupervisedFinetune(llm=llm, use_activation_checkpointing=False,
                                  use_torch_compile=dict(backend="eager"))
    layers = checkpointable_layers(compiled.llm)
    assert layers and all(layer._compiled_call_impl is not None for layer in layers)
    torch.testing.assert_close(compiled(data)["loss"], plain(data)["loss"])


def test_compiled_layers_take_a_new_length_without_recompiling(llama_dir):
    """Rows change length from step to step; compiled static, each new length recompiled
    every layer (torch's recompile limit was reached within 30 steps of W2)."""
    from transformers import AutoModelForCausalLM as Auto

    torch._dynamo.reset()
    llm = dict(type=Auto.from_pretrained, pretrained_model_name_or_path=llama_dir)
    model = SupervisedFinetune(llm=llm, use_activation_checkpointing=False,
                               use_torch_compile=dict(backend="eager"))
    generator = torch.Generator().manual_seed(3)
    for step, length in enumerate((24, 31, 17)):
        ids = torch.randint(5, 100, (1, length), generator=generator)
        with torch._dynamo.config.patch(error_on_recompile=step > 0):
            model({"input_ids": ids, "labels": ids})["loss"].backward()


def test_plan_fits_the_longest_batch_not_the_measured_one(llama_dir):
    """Unpacked data: a short first batch must not un-checkpoint layers that a max_length
    batch would then overflow. Activations scale with tokens; weights do not."""
    llm = _llm(llama_dir).train()
    llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = checkpointable_layers(llm) * 16  # pretend 32 layers
    plan = ActivationCheckpointingPlan(llm, budget=34 * GiB)
    plan.layers = layers
    plan.layer_bytes = GiB // 4  # measured on a 512-token batch
    plan._tokens, plan._forward_start, plan.forward_end = 512, 20 * GiB, 21 * GiB
    plan.max_tokens = 1024  # twice as long: 0.5 GiB a layer, 2 GiB more at forward end
    # 34 - 1.0625 margin - (20 + 2) leaves 10.9 GiB: 21 more layers at 0.5 GiB each, of
    # which the first fit takes half
    assert plan.update(peak=23 * GiB) == 1 + 21 // 2
    plan = ActivationCheckpointingPlan(llm, budget=34 * GiB)
    plan.layers, plan.layer_bytes = layers, GiB // 4
    plan._tokens, plan._forward_start, plan.forward_end = 512, 20 * GiB, 21 * GiB
    assert plan.update(peak=23 * GiB) == 1 + 31 // 2  # fitting the measured batch: all fit
