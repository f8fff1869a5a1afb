# Phi-3.5 mini Instruct, qlora on colorist, 5 epochs:
#     xtuner train phi3_5_mini_instruct_qlora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/phi/phi3_5_mini_instruct.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
