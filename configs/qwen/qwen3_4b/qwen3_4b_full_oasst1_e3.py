# Qwen3 4B, full on oasst1, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train qwen3_4b_full_oasst1_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/qwen/qwen3_4b.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
