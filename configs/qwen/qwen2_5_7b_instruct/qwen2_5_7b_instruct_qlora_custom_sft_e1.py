# Qwen2.5 7B Instruct, qlora on custom_sft, 1 epoch:
#     xtuner train qwen2_5_7b_instruct_qlora_custom_sft_e1 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
