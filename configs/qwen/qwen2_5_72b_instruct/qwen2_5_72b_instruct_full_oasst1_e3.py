# Qwen2.5 72B Instruct, full on oasst1, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train qwen2_5_72b_instruct_full_oasst1_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/qwen/qwen2_5_72b_instruct.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
