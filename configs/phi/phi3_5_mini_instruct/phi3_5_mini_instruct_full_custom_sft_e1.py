# Phi-3.5 mini Instruct, full on custom_sft, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train phi3_5_mini_instruct_full_custom_sft_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/phi/phi3_5_mini_instruct.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
