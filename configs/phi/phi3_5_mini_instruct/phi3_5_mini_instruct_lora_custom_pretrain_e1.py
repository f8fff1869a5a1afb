# Phi-3.5 mini Instruct, lora on custom_pretrain, 1 epoch:
#     xtuner train phi3_5_mini_instruct_lora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/phi/phi3_5_mini_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
