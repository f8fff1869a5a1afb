"""The tiny test Llama loaded in bfloat16, optionally quantized to NF4 4-bit (QLoRA). Built
here rather than from a config dict, which xtuner demotes to float32 on a machine without
CUDA."""
from __future__ import annotations

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM


def bf16_llm(path, quantized: bool = True, dtype: torch.dtype = torch.bfloat16):
    """``path``'s model in bfloat16 (or ``dtype``); with ``quantized``, its linear layers in
    NF4 computing in that dtype (skips the test without bitsandbytes)."""
    quant = None
    if quantized:
        pytest.importorskip("bitsandbytes")
        quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                bnb_4bit_compute_dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, quantization_config=quant)
