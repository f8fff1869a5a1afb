# Offline demo, LoRA variant: adapters on every linear layer of the tiny demo Llama.
#     xtuner train demo_tiny_lora_colorist_e40
from mmengine.config import read_base
from peft import LoraConfig

with read_base():
    from .demo_tiny_full_colorist_e40 import *

model.update(
    lora=dict(type=LoraConfig, r=32, lora_alpha=64, lora_dropout=0.0, bias='none',
              target_modules=None, task_type='CAUSAL_LM'))
optim_wrapper.optimizer.update(lr=1e-2)
