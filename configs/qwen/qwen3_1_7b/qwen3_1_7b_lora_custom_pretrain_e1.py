# Qwen3 1.7B, lora on custom_pretrain, 1 epoch:
#     xtuner train qwen3_1_7b_lora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen3_1_7b.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
