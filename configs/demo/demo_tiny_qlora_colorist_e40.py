# Offline demo, QLoRA variant: the tiny demo Llama quantized to 4-bit NF4 (bitsandbytes runs
# 4-bit on the CPU too), LoRA adapters on every linear layer.
#     xtuner train demo_tiny_qlora_colorist_e40
# The frozen base is the 4-bit copy (each 128-wide weight row is two 64-value NF4 blocks); the
# adapters, embeddings and head train in float32 and learn like the LoRA demo (loss ~0.2-0.3
# after 400 iterations). Without CUDA the compute dtype below falls back to float32. On CPUs
# with AVX512-BF16, xtuner keeps bitsandbytes from switching the 4-bit layers to its
# inference-only layout during the chat evaluation (see xtuner/model/quantization.py).
import torch
from mmengine.config import read_base
from transformers import BitsAndBytesConfig

with read_base():
    from .demo_tiny_lora_colorist_e40 import *

model.llm.update(
    quantization_config=dict(
        type=BitsAndBytesConfig, load_in_4bit=True, load_in_8bit=False,
        llm_int8_threshold=6.0, llm_int8_has_fp16_weight=False,
        bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True,
        bnb_4bit_quant_type='nf4'))
