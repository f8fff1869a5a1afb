# InternLM3 8B Instruct, lora on custom_pretrain, 1 epoch:
#     xtuner train internlm3_8b_instruct_lora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/internlm/internlm3_8b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
