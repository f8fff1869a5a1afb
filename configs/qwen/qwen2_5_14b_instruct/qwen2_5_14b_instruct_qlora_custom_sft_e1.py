# Qwen2.5 14B Instruct, qlora on custom_sft, 1 epoch:
#     xtuner train qwen2_5_14b_instruct_qlora_custom_sft_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_14b_instruct.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
