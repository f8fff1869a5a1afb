# Phi-4 (14B), qlora on colorist, 5 epochs:
#     xtuner train phi4_qlora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/phi/phi4.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
