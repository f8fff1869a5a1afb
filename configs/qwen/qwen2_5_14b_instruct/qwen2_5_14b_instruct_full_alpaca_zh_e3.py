# Qwen2.5 14B Instruct, full on alpaca_zh, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train qwen2_5_14b_instruct_full_alpaca_zh_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/qwen/qwen2_5_14b_instruct.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
