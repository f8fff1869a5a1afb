# Qwen2.5 7B Instruct, qlora on custom_pretrain, 1 epoch:
#     xtuner train qwen2_5_7b_instruct_qlora_custom_pretrain_e1 --deepspeed deepspeed_zero2
#     in 8 GB of GPU memory: add --memory-budget 8GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
