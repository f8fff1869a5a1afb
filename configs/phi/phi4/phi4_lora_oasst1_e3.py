# Phi-4 (14B), lora on oasst1, 3 epochs:
#     xtuner train phi4_lora_oasst1_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/phi/phi4.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
