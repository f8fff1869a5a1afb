# Qwen3 0.6B, qlora on custom_pretrain, 1 epoch:
#     xtuner train qwen3_0_6b_qlora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen3_0_6b.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
