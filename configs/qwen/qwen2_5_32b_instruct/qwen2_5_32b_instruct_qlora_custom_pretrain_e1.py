# Qwen2.5 32B Instruct, qlora on custom_pretrain, 1 epoch:
#     xtuner train qwen2_5_32b_instruct_qlora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_32b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
