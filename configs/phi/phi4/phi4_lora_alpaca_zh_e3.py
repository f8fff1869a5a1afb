# Phi-4 (14B), lora on alpaca_zh, 3 epochs:
#     xtuner train phi4_lora_alpaca_zh_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/phi/phi4.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
