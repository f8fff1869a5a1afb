# Qwen3 4B, full on custom_sft, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train qwen3_4b_full_custom_sft_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/qwen/qwen3_4b.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
