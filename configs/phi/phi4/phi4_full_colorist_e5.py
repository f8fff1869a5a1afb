# Phi-4 (14B), full on colorist, 5 epochs:
#     NPROC_PER_NODE=8 xtuner train phi4_full_colorist_e5 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/phi/phi4.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
