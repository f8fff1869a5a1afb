"""GPU checks (``pytest -m gpu``): the fused varlen kernel path and 4-bit QLoRA on CUDA."""
import pytest
import torch

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.model import SupervisedFinetune
from xtuner.testing import tiny_llm_and_tokenizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

SAMPLES = [[5, 17, 23, 42, 8, 9, 31], [11, 12, 13], [40, 41, 42, 43, 44, 45, 46, 47, 48]]


def _cuda_batch(samples):
    """SAMPLES-like token lists packed into one varlen row, on the GPU."""
    rows = [{"input_ids": s, "labels": s} for s in samples]
    batch = default_collate_fn(rows, use_varlen_attn=True)["data"]
    return {k: (v.cuda() if torch.is_tensor(v) else [t.cuda() for t in v]
                if isinstance(v, list) else v) for k, v in batch.items()}


def _llm_cfg(path, dtype):
    from transformers import AutoModelForCausalLM

    return dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path,
                dtype=dtype)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_packed_logits_equal_separate_runs_with_fused_kernel(tmp_path, arch):
    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, arch=arch, hidden_size=64,
                                          num_attention_heads=4, num_key_value_heads=2)
    model = SupervisedFinetune(_llm_cfg(model_dir, torch.bfloat16), use_varlen_attn=True,
                               use_activation_checkpointing=False).cuda().eval()
    packed = _cuda_batch(SAMPLES)
    with torch.no_grad():
        logits = model(packed, mode="predict")[0]["logits"].float()
        start = 0
        for sample in SAMPLES:
            alone = model.llm(input_ids=torch.tensor([sample]).cuda()).logits[0].float()
            part = logits[start:start + len(sample)]
            torch.testing.assert_close(part, alone, atol=2e-2, rtol=2e-2)
            start += len(sample)
        # Without boundaries every sample after the first would see its predecessors.
        cross = model.llm(input_ids=packed["input_ids"]).logits[0].float()
        assert (cross[len(SAMPLES[0]):] - logits[len(SAMPLES[0]):]).abs().max() > 1e-1


def test_qlora_trains_on_cuda(tmp_path):
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, hidden_size=64)
    llm = _llm_cfg(model_dir, torch.bfloat16)
    llm["quantization_config"] = dict(
        type=BitsAndBytesConfig, load_in_4bit=True, bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    # The tiny model is random: train its output head with the adapters so 30 steps suffice.
    lora = dict(type=LoraConfig, r=16, lora_alpha=32, target_modules=None,
                modules_to_save=["lm_head"])
    model = SupervisedFinetune(llm, lora=lora, use_varlen_attn=True)
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    model.cuda().train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = _cuda_batch(SAMPLES)
    losses = []
    for _ in range(30):
        loss = model(batch, mode="loss")["loss"]
        loss.backward()
        optim.step()
        optim.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_liger_kernels_keep_the_loss(tmp_path):
    pytest.importorskip("liger_kernel")
    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, hidden_size=64)
    batch = _cuda_batch(SAMPLES)
    losses = {}
    for liger in (False, True):
        model = SupervisedFinetune(_llm_cfg(model_dir, torch.bfloat16), use_varlen_attn=True,
                                   use_liger_kernel=liger).cuda()
        assert model.use_liger_kernel is liger
        loss = model(batch, mode="loss")["loss"]
        loss.backward()
        losses[liger] = loss.item()
    assert abs(losses[True] - losses[False]) < 2e-2 * abs(losses[False])


def test_varlen_under_autocast_over_fp32_weights_uses_the_fused_kernel(tmp_path, monkeypatch):
    """AmpOptimWrapper's setting: RoPE promotes q/k to fp32; the backend must still take the
    fused kernel (not the per-sample loop) and keep samples apart."""
    import xtuner.model.attention as attention

    def no_loop(*args, **kwargs):
        raise AssertionError("per-sample fallback used on CUDA under autocast")

    monkeypatch.setattr(attention, "_per_sample_sdpa", no_loop)
    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, hidden_size=64, num_attention_heads=4,
                                          num_key_value_heads=2)
    model = SupervisedFinetune(_llm_cfg(model_dir, torch.float32), use_varlen_attn=True,
                               use_activation_checkpointing=False).cuda().eval()
    packed = _cuda_batch(SAMPLES)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(packed, mode="predict")[0]["logits"].float()
        last = SAMPLES[-1]
        alone = model.llm(input_ids=torch.tensor([last]).cuda()).logits[0].float()
    torch.testing.assert_close(logits[-len(last):], alone, atol=3e-2, rtol=3e-2)


def test_auto_checkpointing_fits_a_budget_on_cuda(tmp_path):
    """'auto' measures the plain layer on the first step and un-checkpoints what fits, half
    of it on the first fit."""
    from xtuner.model.checkpointing import checkpointable_layers

    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, hidden_size=64, num_hidden_layers=4)
    model = SupervisedFinetune(_llm_cfg(model_dir, torch.bfloat16), use_varlen_attn=True,
                               use_activation_checkpointing="auto",
                               activation_memory_budget="1GB").cuda().train()
    plan = model.checkpointing_plan
    layers = checkpointable_layers(model.llm)
    assert plan.plain == 1 and sum(layer.gradient_checkpointing for layer in layers) == 3
    data = _cuda_batch(SAMPLES)
    torch.cuda.reset_peak_memory_stats()
    model(data)["loss"].backward()
    assert plan.layer_bytes > 0 and plan.forward_end is not None
    peak = torch.cuda.max_memory_allocated()
    model.fit_activation_checkpointing(peak)
    assert plan.plain == 2 and plan.calibrating  # the first fit goes half way
    model.fit_activation_checkpointing(peak)  # the extra plain layer cost nothing visible
    assert not plan.calibrating
    assert plan.plain == 4 and not any(layer.gradient_checkpointing for layer in layers)
    # A step 1 GiB over, after the last two plain layers took the peak from ~0 to 2 GiB:
    # about 1 GiB a layer, so two go back (1 GiB over plus the 512 MiB margin).
    model.fit_activation_checkpointing(2**31)
    assert plan.plain == 2 and [layer.gradient_checkpointing for layer in layers] == [
        True, True, False, False]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_compiled_layers_trace_the_varlen_backend_whole(tmp_path, checkpointing):
    """``fullgraph=True`` turns any graph break inside a decoder layer into an error: the
    varlen backend must trace in one piece (on torch 2.11 its kernel lookup split every
    layer), a new batch shape must not recompile, and the compiled layers must give the
    eager loss and gradients."""
    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, hidden_size=64, num_attention_heads=4,
                                          num_key_value_heads=2)
    torch._dynamo.reset()
    # The second batch differs in length, sample count and longest sample: compiled
    # dynamic, it must neither break the graph nor recompile.
    second = SAMPLES[::-1] + [[7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]]
    results = []
    for compile_ in (False, dict(fullgraph=True)):
        torch.manual_seed(0)
        model = SupervisedFinetune(_llm_cfg(model_dir, torch.bfloat16), use_varlen_attn=True,
                                   use_liger_kernel=False, use_torch_compile=compile_,
                                   use_activation_checkpointing=checkpointing).cuda().train()
        losses = []
        for step, samples in enumerate((SAMPLES, second)):
            with torch._dynamo.config.patch(error_on_recompile=step > 0):
                loss = model(_cuda_batch(samples), mode="loss")["loss"]
                loss.backward()
            losses.append(loss.item())
        grad = model.llm.model.layers[0].self_attn.q_proj.weight.grad.float()
        results.append((losses, grad))
    (eager_losses, eager_grad), (compiled_losses, compiled_grad) = results
    assert compiled_losses == pytest.approx(eager_losses, rel=2e-2)
    torch.testing.assert_close(compiled_grad, eager_grad, atol=5e-2, rtol=5e-2)
