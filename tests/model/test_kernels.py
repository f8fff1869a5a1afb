"""liger kernels change only the model instance they are applied to."""
from __future__ import annotations

import pytest
import torch
from transformers.models.llama import modeling_llama

from xtuner.model.kernels import _module_bindings_kept, apply_liger_kernels


def test_module_level_rebinding_is_undone():
    """What liger's per-architecture functions do to transformers' modules, undone."""
    norm, mlp = modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP
    forward = modeling_llama.LlamaForCausalLM.forward

    class Replacement(torch.nn.Module):
        pass

    with _module_bindings_kept() as restored:
        modeling_llama.LlamaRMSNorm = Replacement
        modeling_llama.LlamaMLP = Replacement
        modeling_llama.LlamaForCausalLM.forward = lambda self, *a, **k: None
    assert modeling_llama.LlamaRMSNorm is norm and modeling_llama.LlamaMLP is mlp
    assert modeling_llama.LlamaForCausalLM.forward is forward
    prefix = "transformers.models.llama.modeling_llama."
    assert {prefix + "LlamaRMSNorm", prefix + "LlamaMLP",
            prefix + "LlamaForCausalLM.forward"} <= set(restored)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_liger_patches_the_instance_only(tmp_path, arch):
    pytest.importorskip("liger_kernel")
    import sys

    from transformers import AutoModelForCausalLM

    from xtuner.testing import tiny_llm_and_tokenizer

    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, arch=arch, hidden_size=64)
    patched = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda()
    modeling = sys.modules[type(patched).__module__]
    before = dict(vars(modeling))
    class_forward = type(patched).forward
    assert apply_liger_kernels(patched, mode=True)
    # The instance runs liger's code...
    assert "forward" in vars(patched)
    assert "forward" in vars(patched.model.norm)
    assert "forward" in vars(patched.model.layers[0].mlp)
    # ...and nothing else changed: the module, the class, a model built afterwards.
    assert {k: v for k, v in vars(modeling).items() if before.get(k) is not v} == {}
    assert type(patched).forward is class_forward
    later = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda()
    assert "forward" not in vars(later)
    assert "forward" not in vars(later.model.norm)
    assert type(later.model.layers[0].mlp).__module__ == modeling.__name__
    ids = torch.arange(3, 19, device="cuda")[None]
    with torch.no_grad():
        a = patched(input_ids=ids, labels=ids).loss
        b = later(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_loss_alone_for_compiled_layers(tmp_path):
    """``layer_kernels=False`` (compiled layers): liger's loss, the model's own norms and MLP,
    and the same loss as a model liger never touched."""
    pytest.importorskip("liger_kernel")
    from transformers import AutoModelForCausalLM

    from xtuner.testing import tiny_llm_and_tokenizer

    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, arch="llama", hidden_size=64)
    patched = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda()
    assert apply_liger_kernels(patched, mode=True, layer_kernels=False)
    assert "forward" in vars(patched)
    assert "forward" not in vars(patched.model.norm)
    assert "forward" not in vars(patched.model.layers[0].mlp)
    plain = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda()
    ids = torch.arange(3, 19, device="cuda")[None]
    with torch.no_grad():
        a = patched(input_ids=ids, labels=ids).loss
        b = plain(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)
