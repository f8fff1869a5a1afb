# Offline demo, LoRA variant: adapters on every linear layer of the tiny demo Llama.
#     xtuner train demo_tiny_lora_colorist_e40
# The demo model is randomly initialised, so its embeddings and output head are trained too
# (`modules_to_save`) and the rank covers the whole 128-wide model; with a real pretrained model
# leave `modules_to_save` out and use r=64 or less.
from mmengine.config import read_base
from peft import LoraConfig

with read_base():
    from .demo_tiny_full_colorist_e40 import *

model.update(
    lora=dict(type=LoraConfig, r=128, lora_alpha=128, lora_dropout=0.0, bias='none',
              target_modules=None, task_type='CAUSAL_LM',
              modules_to_save=['embed_tokens', 'lm_head']))
optim_wrapper.optimizer.update(lr=3e-3)
