"""Helpers that build a Hugging Face model from an xtuner config dict."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

import xtuner.model.utils as model_utils
from xtuner.model.utils import (
    apply_device_fallbacks,
    build_from_cfg,
    find_all_linear_names,
    is_quantized,
    normalize_dtype,
)


def test_normalize_dtype():
    assert normalize_dtype("torch.float16") is torch.float16
    assert normalize_dtype("bf16") is torch.bfloat16
    assert normalize_dtype(torch.float32) is torch.float32
    assert normalize_dtype("auto") == "auto"


def test_device_fallbacks_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = dict(type="x", torch_dtype="torch.bfloat16", device_map="auto",
               low_cpu_mem_usage=True,
               quantization_config=dict(type="q", bnb_4bit_compute_dtype="torch.float16",
                                        load_in_4bit=True))
    out = apply_device_fallbacks(cfg)
    assert out == dict(type="x", dtype=torch.float32,
                       quantization_config=dict(type="q", bnb_4bit_compute_dtype=torch.float32,
                                                load_in_4bit=True))
    assert cfg["torch_dtype"] == "torch.bfloat16"  # the caller's dict is not modified
    assert cfg["quantization_config"]["bnb_4bit_compute_dtype"] == "torch.float16"


def test_device_fallbacks_with_cuda_per_rank_device_map(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    out = apply_device_fallbacks(dict(type="x", dtype="fp16", device_map="auto"))
    assert out == dict(type="x", dtype=torch.float16, device_map={"": 3})
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert apply_device_fallbacks(dict(device_map="auto"))["device_map"] == "auto"


def test_build_from_cfg_builds_nested_configs():
    cfg = dict(type=LlamaConfig, hidden_size=32, num_attention_heads=4, intermediate_size=64,
               num_hidden_layers=1, vocab_size=64, dtype="torch.float32")
    config = build_from_cfg(cfg)
    assert isinstance(config, LlamaConfig) and config.hidden_size == 32
    model = build_from_cfg(dict(type=AutoModelForCausalLM.from_config, config=cfg))
    assert model.config.num_hidden_layers == 1
    assert build_from_cfg(config) is config  # built objects pass through


def test_find_all_linear_names_and_is_quantized(llama_dir):
    model = AutoModelForCausalLM.from_pretrained(llama_dir)
    assert find_all_linear_names(model) == ["down_proj", "gate_proj", "k_proj", "o_proj",
                                            "q_proj", "up_proj", "v_proj"]
    assert not is_quantized(model)


def test_find_all_linear_names_skips_a_renamed_head():
    """The output head is found with ``get_output_embeddings``, whatever its name."""

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)
            self.classifier = torch.nn.Linear(4, 8)

        def get_output_embeddings(self):
            return self.classifier

    assert model_utils.find_all_linear_names(Wrapper()) == ["proj"]


def test_as_torch_dtype_reads_every_spelling():
    from xtuner.model.utils import as_torch_dtype

    for value in (torch.bfloat16, "bfloat16", "torch.bfloat16"):
        assert as_torch_dtype(value) is torch.bfloat16
    with pytest.raises(ValueError, match="not a torch dtype: 'float17'"):
        as_torch_dtype("float17")
