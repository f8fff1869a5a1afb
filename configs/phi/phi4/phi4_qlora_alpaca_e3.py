# Phi-4 (14B), qlora on alpaca, 3 epochs:
#     xtuner train phi4_qlora_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/phi/phi4.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
